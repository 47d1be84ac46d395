"""Checks made before any stage starts, so a run fails in a second with the key to fix, not an hour in.

Usage:
    problems = check(params, Path("."))     # [] when the run can start
"""

from __future__ import annotations

from pathlib import Path

from slmops.config import Params, ParamsError, gates_file, load_gates, resolve_model_path
from slmops.tasks import load_task

LATENCY_AND_SIZE = {"latency_p50_ms", "latency_p95_ms", "size_mb", "n"}


def _offline_problems(params: Params, root: Path) -> list[str]:
    if not params.project.offline:
        return []
    problems = []
    models = {"finetune.base_model": params.finetune.base_model}
    if params.synthesize.teacher.kind == "transformers":
        models["synthesize.teacher.model"] = params.synthesize.teacher.model
    for key, ref in models.items():
        if not Path(resolve_model_path(ref, root)).exists():
            problems.append(
                f"{key} {ref!r} is not a local folder and project.offline is true: nothing may be downloaded. "
                "Point it at a local folder, or set project.offline: false to allow the download"
            )
    return problems


def check(params: Params, root: Path) -> list[str]:
    problems: list[str] = []
    try:
        task = load_task(params.task, root)
    except (OSError, ValueError, ImportError, AttributeError, TypeError) as err:
        return [f"task {params.task!r}: {err}"]
    if params.data.labelled is None:
        problems.append("data.labelled is not set: name your labelled data file in params")
    for name, src in params.data.sources().items():
        if not (root / src.path).exists():
            hint = " (the demo writes it: run `slmops demo build` first)" if task.spec.demo_generator else ""
            problems.append(f"data.{name}.path {src.path!r} does not exist under {root}{hint}")
    problems += _offline_problems(params, root)
    try:
        gates = load_gates(gates_file(params, root))
    except (ParamsError, OSError) as err:
        return problems + [f"gates: {err}"]
    known = set(task.metric_names) | LATENCY_AND_SIZE
    for stage in ("poc", "pilot", "prod"):
        thresholds = getattr(gates, stage)
        for kind in ("min", "max", "max_regression_vs_champion"):
            for metric in getattr(thresholds, kind):
                if metric not in known:
                    problems.append(
                        f"{gates_file(params, root).name}: {stage}.{kind}.{metric}: the task reports no such metric; "
                        f"it reports {sorted(known)}"
                    )
    return problems
