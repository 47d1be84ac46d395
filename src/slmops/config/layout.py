"""Every path below the project root, owned by one class."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Layout(BaseModel):
    """Every path the pipeline reads or writes, below the project's root."""

    model_config = ConfigDict(frozen=True)
    root: Path

    def _p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    prepared = property(lambda self: self._p("data", "prepared"))
    synthetic = property(lambda self: self._p("data", "synthetic"))
    tokenizer = property(lambda self: self._p("models", "tokenizer"))
    student_base = property(lambda self: self._p("models", "student_base"))
    student = property(lambda self: self._p("models", "student"))
    student_onnx = property(lambda self: self._p("models", "student_onnx"))
    reports = property(lambda self: self._p("reports"))
    inference_log = property(lambda self: self._p("logs", "inference.jsonl"))
    state = property(lambda self: self._p(".slmops"))
    console_log = property(lambda self: self._p("logs", "slmops.log"))
    traffic = property(lambda self: self._p("data", "traffic"))  # harvested traffic, append-only batches
    traffic_labelled = property(lambda self: self._p("data", "traffic_labelled"))  # train.jsonl + recent.jsonl
    champion = property(lambda self: self._p("models", "champion"))  # merged weights of the last poc holder
    teacher_cache = property(lambda self: self._p(".slmops", "teacher_cache.sqlite"))
    # Each stage's last execution (seconds, teacher calls): kept out of its output folder, which DVC hashes.
    stage_runs = property(lambda self: self._p(".slmops", "stage_runs"))
    # The embedded stack: MLflow on SQLite with artifacts beside it, Prefect's home, DVC's site cache.
    mlflow_db = property(lambda self: self._p("mlruns.db"))
    mlflow_artifacts = property(lambda self: self._p("mlartifacts"))
    prefect_home = property(lambda self: self._p(".prefect"))
    dvc_site_cache = property(lambda self: self._p(".dvc-site-cache"))
    hf_datasets_cache = property(lambda self: self._p(".cache", "datasets"))
    # The team's stack (`slmops stack up`): each server's data, logs and pid files, and the endpoints file.
    stack_dir = property(lambda self: self._p(".slmops", "stack"))
    stack_endpoints = property(lambda self: self._p(".slmops", "stack", "endpoints.json"))
    stack_postgres = property(lambda self: self._p(".slmops", "stack", "postgres"))
    stack_object_store = property(lambda self: self._p(".slmops", "stack", "seaweedfs"))
    stack_prefect_home = property(lambda self: self._p(".slmops", "stack", "prefect-home"))
    stack_logs = property(lambda self: self._p(".slmops", "stack", "logs"))
    stack_pids = property(lambda self: self._p(".slmops", "stack", "pids"))
    drift_report = property(lambda self: self._p("reports", "monitor", "drift_report.html"))
    loop_demo_report = property(lambda self: self._p("reports", "loop_demo.json"))
    loop_demo_server_log = property(lambda self: self._p("logs", "loop-demo-server.log"))

    @property
    def mlflow_uri(self) -> str:
        """The embedded tracking store (``MLFLOW_TRACKING_URI`` when nothing else is set)."""
        return f"sqlite:///{self.mlflow_db.resolve()}"


def resolve_model_path(name_or_path: str, root: Path) -> str:
    """A relative path that exists under ``root`` wins; anything else is treated as a hub id."""
    candidate = root / name_or_path
    return str(candidate) if candidate.exists() else name_or_path
