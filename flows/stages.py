"""Stage runner shared by the flows: content-addressed caching plus one nested MLflow run per stage.

A stage's cache key is its config, the content hashes of its inputs (not their paths) and the hash of
the code that computes it. When ``<out_dir>/manifest.json`` already holds that key, the stage is skipped
and its recorded result returned, so a rerun after a crash resumes at the first unfinished stage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components.io import atomic_write_text, read_manifest, sha256_text, sha256_tree
from flows.runtime import flatten

log = logging.getLogger("slmops")
COMPONENTS = Path(__file__).resolve().parent.parent / "components"


def code_hash(*modules: str) -> str:
    """Hash of the named component source files/folders (e.g. ``"finetune.py"``, ``"demo"``)."""
    return sha256_text("".join(sha256_tree(COMPONENTS / m) for m in modules))


def cache_key(config: Any, inputs: list[Path], code: str) -> str:
    cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    digests = [sha256_tree(p) if p.exists() else "missing" for p in inputs]
    return sha256_text(json.dumps([cfg, digests, code], sort_keys=True, default=str))


def _numbers(data: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in flatten(data).items() if isinstance(v, int | float) and not isinstance(v, bool)}


def run_stage(
    name: str,
    *,
    config: Any,
    inputs: list[Path],
    code: str,
    out_dir: Path,
    fn: Callable[[], BaseModel],
    parent_run_id: str | None,
    artifacts: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run ``fn`` unless ``out_dir`` already holds a result for the same key; log it to MLflow either way."""
    import mlflow

    key = cache_key(config, inputs, code)
    manifest = read_manifest(out_dir) or {}
    cached = manifest.get("cache_key") == key and "result" in manifest
    if cached:
        log.warning("stage %s: cached (inputs, params and code unchanged)", name)
        result = manifest["result"]
    else:
        log.warning("stage %s: running", name)
        started = time.perf_counter()
        result = fn().model_dump(mode="json")
        seconds = round(time.perf_counter() - started, 1)
        log.warning("stage %s: done in %.1f s", name, seconds)
        manifest = read_manifest(out_dir) or {}
        manifest |= {
            "cache_key": key,
            "seconds": seconds,
            "result": {k: v for k, v in result.items() if k != "log_history"},
        }
        atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2, default=str))

    with mlflow.start_run(run_name=name, nested=parent_run_id is not None, parent_run_id=parent_run_id):
        mlflow.set_tag("cached", str(cached).lower())
        if "seconds" in manifest:  # time of the run that computed it, also when this one was cached
            mlflow.log_metric("stage_seconds", manifest["seconds"])
        if isinstance(config, BaseModel):
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(config.model_dump(mode="json")).items()})
        mlflow.log_metrics(_numbers({k: v for k, v in result.items() if k != "log_history"}))
        for step, entry in enumerate(result.get("log_history", [])):
            mlflow.log_metrics(
                {k: v for k, v in entry.items() if k in ("loss", "eval_loss", "learning_rate")},
                step=int(entry.get("step", step)),
            )
        mlflow.log_artifact(str(out_dir / "manifest.json"))
        for artifact in artifacts:
            if (out_dir / artifact).exists():
                mlflow.log_artifact(str(out_dir / artifact))
    return result
