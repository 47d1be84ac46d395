"""Run one registered stage: content-addressed caching that checks its outputs are intact, one MLflow run,
one console line.

Usage:
    from slmops.flows.runner import run_stage
    result = run_stage(STAGES["prepare"], Ctx(params, root), parent_run_id=None)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from slmops.flows.stages import Ctx, Stage, input_paths, stage_code_hash, stage_params
from slmops.io import atomic_write_text, flatten, read_manifest, sha256_file, sha256_text, sha256_tree

log = logging.getLogger("slmops")


def param_slice(params_dump: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``{"project.seed": 42, "prepare": {...}}``: the values of dotted keys in the resolved params."""
    out = {}
    for key in keys:
        node: Any = params_dump
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def cache_key(stage: Stage, ctx: Ctx) -> str:
    """Params slice + content hashes of the inputs + hashes of the code: what the stage's result depends on."""
    values = param_slice(ctx.params.model_dump(mode="json"), stage_params(stage, ctx))
    inputs = [sha256_tree(p) if p.exists() else "missing" for p in input_paths(stage, ctx)]
    code = stage_code_hash(stage, ctx)
    return sha256_text(json.dumps([values, inputs, code], sort_keys=True, default=str))


def output_hashes(out_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(out_dir).as_posix(): sha256_file(p)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def changed_outputs(out_dir: Path, recorded: dict[str, str]) -> list[str]:
    """Files that differ from, are missing from or were added to what the stage recorded when it ran."""
    now = output_hashes(out_dir) if out_dir.exists() else {}
    return sorted(f for f in set(now) | set(recorded) if now.get(f) != recorded.get(f))


def _status(stage: Stage, ctx: Ctx, key: str) -> tuple[str, dict[str, Any] | None]:
    """``("cached", result)`` (with what the execution that computed it spent, when known), or ``("ran", None)`` /
    ``("rerun: ...", None)`` when it must run."""
    manifest = read_manifest(stage.out(ctx)) or {}
    if manifest.get("cache_key") != key or "result" not in manifest:
        return "ran", None
    changed = changed_outputs(stage.out(ctx), manifest.get("outputs", {}))
    if changed:
        shown = ", ".join(changed[:3]) + (f" +{len(changed) - 3}" if len(changed) > 3 else "")
        return f"rerun: outputs changed since cached ({shown})", None
    return "cached", manifest["result"] | last_execution(stage, ctx, key)  # seconds included


def last_execution(stage: Stage, ctx: Ctx, key: str) -> dict[str, Any]:
    """What the execution that computed the cached result recorded of itself (its seconds, teacher calls and
    spend), when it was this key's; {} after e.g. a `dvc pull` brought the outputs without it."""
    path = ctx.layout.stage_runs / f"{stage.name}.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return record.get("execution", {}) if record.get("cache_key") == key else {}


def _record(stage: Stage, ctx: Ctx, key: str, model: Any, seconds: float) -> dict[str, Any]:
    """Write the output folder's manifest with what the outputs are (the same bytes whenever the same outputs
    are written: DVC hashes this folder), and beside it, in the run state, what this execution was."""
    result = model.model_dump(mode="json")
    execution = {"seconds": seconds} | {k: result[k] for k in getattr(model, "RUN_FIELDS", ()) if k in result}
    out_dir = stage.out(ctx)
    manifest = (read_manifest(out_dir) or {}) | {
        "cache_key": key,
        "result": {k: v for k, v in result.items() if k != "log_history" and k not in execution},
        "outputs": output_hashes(out_dir),
    }
    manifest.pop("seconds", None)  # written by older versions
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2, default=str))
    ctx.layout.stage_runs.mkdir(parents=True, exist_ok=True)
    record = {"cache_key": key, "execution": execution}
    atomic_write_text(ctx.layout.stage_runs / f"{stage.name}.json", json.dumps(record, indent=2, default=str))
    return result | execution


def run_stage(stage: Stage, ctx: Ctx, parent_run_id: str | None = None, track: bool = True) -> dict[str, Any]:
    """Run ``stage`` unless its output folder holds an intact result for the same key; print one line; log it to
    a nested MLflow run under ``parent_run_id`` when ``track``."""
    key = cache_key(stage, ctx)
    status, result = _status(stage, ctx, key)
    if result is None:
        log.info("stage %s: %s", stage.name, status)
        started = time.perf_counter()
        model = stage.run(ctx)
        result = _record(stage, ctx, key, model, round(time.perf_counter() - started, 1))
    seconds = result.pop("seconds", None)
    print(_line(stage, status, seconds, result), flush=True)
    if track:
        _log_mlflow(stage, ctx, status, seconds, result, parent_run_id)
    return result


def _line(stage: Stage, status: str, seconds: float | None, result: dict[str, Any]) -> str:
    try:
        figure = stage.summary(result)
    except (KeyError, TypeError, ValueError):  # a summary must never fail a stage that succeeded
        figure = ""
    took = f"{seconds:7.1f} s" if status != "cached" and seconds is not None else "       -  "
    mark = "cached" if status == "cached" else "ran"
    note = f"  ({status})" if status.startswith("rerun") else ""
    return f"  {stage.name:<18} {mark:<7} {took}  {figure}{note}"


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in flatten(data).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _log_mlflow(stage: Stage, ctx: Ctx, status: str, seconds, result: dict, parent_run_id: str | None) -> None:
    import mlflow

    out_dir = stage.out(ctx)
    with mlflow.start_run(run_name=stage.name, nested=parent_run_id is not None, parent_run_id=parent_run_id):
        mlflow.set_tags({"cached": str(status == "cached").lower(), "stage_status": status[:250]})
        notes = {"warning": result.get("warning"), "epochs_reason": result.get("epochs_reason")}
        notes |= {"method": result.get("method"), "method_reason": result.get("method_reason")}  # finetune's
        notes |= {"parallel": result.get("parallel")}  # finetune's: none, ddp or fsdp
        mlflow.set_tags({key: str(text)[:5000] for key, text in notes.items() if text})  # e.g. under-trained
        if seconds is not None:  # time of the run that computed it, also when this one was cached
            mlflow.log_metric("stage_seconds", seconds)
        values = param_slice(ctx.params.model_dump(mode="json"), stage_params(stage, ctx))
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(values).items()})
        mlflow.log_metrics(_numbers({k: v for k, v in result.items() if k != "log_history"}))
        for step, entry in enumerate(result.get("log_history", [])):
            mlflow.log_metrics(
                {k: v for k, v in entry.items() if k in ("loss", "eval_loss", "learning_rate")},
                step=int(entry.get("step", step)),
            )
        mlflow.log_artifact(str(out_dir / "manifest.json"))
        for pattern in stage.artifacts:
            for artifact in sorted(out_dir.glob(pattern)):
                mlflow.log_artifact(str(artifact))
        for name, context in stage.datasets:
            log_dataset(out_dir / name, context)


def log_dataset(path: Path, context: str) -> None:
    """Log a JSONL file as an MLflow dataset input of the active run (name, digest, source, schema)."""
    import mlflow
    import pandas as pd

    from slmops.io import load_jsonl

    if path.exists() and path.stat().st_size:  # an empty file (no traffic yet) is no dataset
        frame = pd.json_normalize(load_jsonl(path))
        dataset = mlflow.data.from_pandas(frame, source=str(path), name=f"{path.parent.name}/{path.name}")
        mlflow.log_input(dataset, context=context)
