"""The flows: ``demo_build`` (the offline stand-ins) and ``pipeline`` (prepare -> ... -> gate + register).

Usage:
    slmops demo build --profile demo     # generated data, tokenizer, tiny base model (only the demo needs this)
    slmops run --profile demo            # the pipeline on whatever data:, task:, base_model and teacher say

Every stage is one entry of the registry in ``flows/stages.py``, run here as a Prefect task and logged as a
nested MLflow run under one parent run; ``dvc.yaml`` runs the same stages (``make repro``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from components.config import PARAMS_DIR, Params, load_gates, load_params
from components.io import sha256_tree
from flows.runner import log_dataset, run_stage
from flows.runtime import flatten, tracking
from flows.stages import DEMO, PIPELINE, STAGES, Ctx


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(name: str, ctx: Ctx, parent: str | None) -> dict[str, Any]:
    return run_stage(STAGES[name], ctx, parent)


def _run_stages(stages, ctx: Ctx, parent: str) -> dict[str, dict[str, Any]]:
    return {s.name: stage_task.with_options(name=s.name)(s.name, ctx, parent) for s in stages}


@flow(name="slmops-demo-build")
def demo_build(profile: str = "demo", work_dir: str = ".") -> dict[str, Any]:
    """Offline stand-ins for what real users bring or download: data, a tokenizer, a student base model."""
    import mlflow

    ctx = Ctx(load_params(profile), Path(work_dir).resolve())
    tracking(ctx.root, ctx.params.project.experiment)
    with mlflow.start_run(run_name=f"demo-build-{profile}") as run:
        mlflow.set_tag("profile", profile)
        return _run_stages(DEMO, ctx, run.info.run_id)


@task(name="gate-and-register", cache_policy=NO_CACHE)
def gate_and_register(ctx: Ctx, metrics: dict[str, dict[str, float]], parity: dict[str, Any]) -> dict[str, Any]:
    """Check parity (trained -> ... -> served) and the ``poc`` gates on every quantized form; register the smallest
    form that passes and point ``poc`` at it. Failing parity registers nothing, naming the step that diverged.

    With one form (``quantize.weight_type``, the default) that is the plain gate. The other forms' metrics are
    in the same MLflow run (``student_<form>.*``), so the size/quality trade-off is visible per run."""
    from components import registry
    from components.gates import decide
    from components.quantize import choose_candidate

    params, gates = ctx.params, load_gates(PARAMS_DIR / ctx.params.gates).poc
    forms = {form: metrics[f"student_{form}"] for form in params.quantize.forms}
    chosen = choose_candidate(
        forms, {f: m.get("size_mb", 0.0) for f, m in forms.items()}, lambda m: decide(m, None, gates).passed
    )
    form = chosen or params.quantize.weight_type
    decision = decide(forms[form], None, gates, stage="poc")
    out: dict[str, Any] = decision.model_dump() | {"form": form}
    if decision.passed:
        name, model_dir = params.model_name, ctx.layout.student_onnx / form
        holder = registry.alias_version(name, "poc")
        if holder is not None and registry.version_sha256(name, holder) == sha256_tree(model_dir):
            return out | {"version": holder, "unchanged": True}  # a rerun of the same model: no duplicate version
        version = registry.register(model_dir, name, forms[form], ctx.task)
        registry.set_alias(name, "poc", version)
        out["version"] = version
    return out


@flow(name="slmops-pipeline")
def pipeline(profile: str = "demo", work_dir: str = ".", overrides: list[str] | None = None) -> dict[str, Any]:
    import mlflow

    params = load_params(profile, overrides=overrides or [])
    ctx = Ctx(params, Path(work_dir).resolve())
    experiment_id = tracking(ctx.root, params.project.experiment)
    with mlflow.start_run(run_name=f"pipeline-{profile}") as parent_run:
        parent = parent_run.info.run_id
        _log_params(params, profile)
        if overrides:
            mlflow.set_tag("overrides", " ".join(overrides)[:5000])
        results = _run_stages(PIPELINE, ctx, parent)
        metrics = results["evaluate"]["metrics"]
        for model_name, values in metrics.items():
            mlflow.log_metrics({f"{model_name}.{k}": v for k, v in values.items()})
        _log_evaluation(ctx, metrics)
        decision = gate_and_register(ctx, metrics, results["parity"]["figures"])
        mlflow.set_tags({"poc_gate": "passed" if decision["passed"] else "failed", "served_form": decision["form"]})
        if params.dvc.commit:
            from flows.versioning import dvc_commit_and_push

            lock = dvc_commit_and_push(ctx.root)
            if lock is not None:
                mlflow.log_artifact(str(lock))
        if (ctx.root / "logs" / "slmops.log").exists():  # the full log: library output, warnings, tracebacks
            mlflow.log_artifact(str(ctx.root / "logs" / "slmops.log"), artifact_path="logs")
    return {
        "run_id": parent,
        "experiment_id": experiment_id,
        "metrics": metrics,
        "gate": decision,
        "reports": str(ctx.layout.reports),
    }


def _log_params(params: Params, profile: str) -> None:
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in flatten(params.model_dump(mode="json")).items()})
    mlflow.set_tags({"profile": profile, "task": params.task})


def _log_evaluation(ctx: Ctx, metrics: dict[str, dict[str, float]]) -> None:
    """The parent run shows what was trained on and tested on (datasets), the side-by-side metrics, and every
    model's per-example predictions as tables the MLflow UI can compare across runs."""
    import mlflow
    import pandas as pd

    from components.io import load_jsonl

    log_dataset(ctx.layout.synthetic / "train.jsonl", "training")
    log_dataset(ctx.layout.prepared / "test.jsonl", "evaluation")
    mlflow.log_table(_comparison_table(metrics), artifact_file="eval/comparison.json")
    for model in metrics:
        rows = load_jsonl(ctx.layout.reports / "eval" / f"predictions_{model}.jsonl")
        mlflow.log_table(pd.json_normalize(rows), artifact_file=f"eval/predictions_{model}.json")
    mlflow.log_artifacts(str(ctx.layout.reports / "eval"), artifact_path="eval")


def _comparison_table(metrics: dict[str, dict[str, float]]) -> dict[str, list]:
    columns = sorted({k for m in metrics.values() for k in m})
    return {"model": list(metrics), **{c: [metrics[m].get(c) for m in metrics] for c in columns}}
