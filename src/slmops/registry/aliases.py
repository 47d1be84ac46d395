"""MLflow Model Registry: register the ONNX model, move aliases (poc -> pilot -> prod), roll back, load.

Usage:
    version = register(Path("models/student_onnx/int8"), "ticket-triage-slm", metrics)   # inside a run
    set_alias("ticket-triage-slm", "poc", version)
    model, info = load_chat_model("ticket-triage-slm", "prod")

Aliases replace the deprecated MLflow stages. Each alias move is appended to a registered-model tag
``alias_history.<alias>`` so ``rollback`` can restore the previous holder. The ONNX folder's sha256 is
recorded at registration and checked at load: a model whose files changed is refused.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from slmops.io import sha256_tree

PYFUNC_FILE = Path(__file__).with_name("onnx_pyfunc.py")
METRIC_TAG = "metric."
HISTORY_KEEP = 30
MODEL_ARTIFACT = "model"  # the logged model's name in its run


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


# What the registered model needs to load anywhere (``onnx_pyfunc.py`` imports nothing from slmops).
EXAMPLE = ["注文した商品がまだ届きません"]
PORTABLE_REQUIREMENTS = ("mlflow", "onnxruntime", "onnxruntime-genai", "transformers", "numpy", "jinja2")


def pinned_requirements() -> list[str]:
    """``PORTABLE_REQUIREMENTS`` at the versions installed here (the versions the model was checked with)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in PORTABLE_REQUIREMENTS]


def task_spec(task=None) -> dict:
    """The student's prompt, as the registered model carries it: messages with ``{text}`` for the inquiry
    (``task.build_messages``), plus the task's prompt template text when it has one. No task: the inquiry
    alone as the user message."""
    from slmops.registry.onnx_pyfunc import TEXT_SLOT

    if task is None:
        return {"messages": [{"role": "user", "content": TEXT_SLOT}]}
    spec = {"messages": task.build_messages(TEXT_SLOT)}
    if hasattr(task, "prompt_template_text"):
        spec["prompt_template"] = task.prompt_template_text()
    return spec


class RegistrationError(RuntimeError):
    """A model could not be registered; no version was created."""


def register(onnx_dir: Path, name: str, metrics: dict[str, float], task=None) -> str:
    """Log the ONNX folder as a portable models-from-code pyfunc in the active run; register a new version.

    The model carries its inference code (``onnx_pyfunc.py``), the ONNX folder, the task's student prompt
    (``task.json``, see ``task_spec``), pinned installable requirements, a signature (a list of inquiries in,
    a list of answers out) and an input example. The version is created in one call with its sha256 and
    metrics as tags, after every file is stored: a failure anywhere before leaves no version behind, and
    never a version without its hash.
    """
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory(prefix="slmops-task-") as tmp:
        spec_path = Path(tmp) / "task.json"
        spec_path.write_text(json.dumps(task_spec(task), ensure_ascii=False, indent=2), encoding="utf-8")
        try:
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(PYFUNC_FILE),
                artifacts={"onnx_model": str(onnx_dir), "task": str(spec_path)},
                pip_requirements=pinned_requirements(),
                signature=infer_signature(EXAMPLE, ["{...}"], params={"max_tokens": 96}),
                input_example=(EXAMPLE, {"max_tokens": 96}),
            )
        except MlflowException as err:
            raise RegistrationError(_unstored(name, err)) from err
    tags = {"sha256": sha256_tree(onnx_dir)} | {METRIC_TAG + key: str(value) for key, value in metrics.items()}
    version = mlflow.register_model(f"runs:/{info.run_id}/{MODEL_ARTIFACT}", name, tags=tags)
    return str(version.version)


def _unstored(name: str, err: Exception) -> str:
    """Say which store failed: the tracking server's artifact store answers for ``mlflow-artifacts`` requests."""
    where = (
        "the tracking server could not store the model's files in its artifact store (is the object store up? "
        "`slmops stack status`)"
        if "mlflow-artifacts" in str(err)
        else "the model's files could not be stored"
    )
    return f"{name}: nothing registered: {where}: {str(err)[:600]}"


def version_metrics(name: str, version: str) -> dict[str, float]:
    tags = _client().get_model_version(name, version).tags
    return {k.removeprefix(METRIC_TAG): float(v) for k, v in tags.items() if k.startswith(METRIC_TAG)}


def version_sha256(name: str, version: str) -> str | None:
    """The ONNX folder's sha256 recorded when ``version`` was registered."""
    return _client().get_model_version(name, version).tags.get("sha256")


def alias_version(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def history(name: str, alias: str) -> list[dict]:
    tags = _client().get_registered_model(name).tags
    return json.loads(tags.get(f"alias_history.{alias}", "[]"))


def set_alias(name: str, alias: str, version: str, note: str = "promote") -> None:
    client = _client()
    client.set_registered_model_alias(name, alias, version)
    entries = history(name, alias) + [
        {"version": version, "at": datetime.now(UTC).isoformat(timespec="seconds"), "note": note}
    ]
    client.set_registered_model_tag(name, f"alias_history.{alias}", json.dumps(entries[-HISTORY_KEEP:]))


def rollback(name: str, alias: str) -> str:
    """Point ``alias`` at the version that held it before the current one; returns that version."""
    current = alias_version(name, alias)
    previous = [e["version"] for e in history(name, alias) if e["version"] != current]
    if current is None or not previous:
        raise ValueError(f"nothing to roll back to: {name}@{alias} has no earlier holder")
    set_alias(name, alias, previous[-1], note=f"rollback from {current}")
    return previous[-1]


def load_chat_model(name: str, alias: str):
    """Load ``models:/<name>@<alias>``, verify its sha256, and return ``(ChatModel, version)``."""
    version = alias_version(name, alias)
    if version is None:
        raise ValueError(f"no model version holds alias {alias!r} of {name!r}; register and promote one first")
    return load_version(name, version), version


def load_version(name: str, version: str):
    """Load version ``version`` of ``name`` as a ``ChatModel`` after checking its sha256.

    The files are copied to a temporary folder, hashed, and loaded before the folder is removed, so no copy
    is left behind per load and no file is parsed before its hash matched the one recorded at registration.
    """
    import tempfile

    import mlflow

    expected = version_sha256(name, version)
    with tempfile.TemporaryDirectory(prefix="slmops-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=tmp))
        onnx_dirs = [p for p in (local / "artifacts").iterdir() if p.is_dir()]
        actual = sha256_tree(onnx_dirs[0]) if len(onnx_dirs) == 1 else "missing"
        if expected is None or actual != expected:
            raise ValueError(
                f"{name} v{version}: artifact sha256 {actual[:12]} != registered {str(expected)[:12]}; refusing to load"
            )
        from slmops.inference.chat_model import ChatModel

        return ChatModel.load(onnx_dirs[0])
