"""Tasks are data: a YAML spec in the project's ``tasks/`` (or a ``module:Class`` for logic a spec cannot express).

Usage:
    from slmops.tasks import load_task
    task = load_task("ticket_triage", root)            # <root>/tasks/ticket_triage.yaml
    task = load_task("path/to/my_task.yaml", root)     # any spec file (relative to the project root)
    task = load_task("my_package.tasks:Invoice", root) # a Task subclass (constructed without arguments)

Every other module receives a ``Task`` object and never names a particular task.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from slmops.tasks.spec import FieldSpec, Task, TaskSpec, check_spec

__all__ = ["FieldSpec", "Task", "TaskSpec", "load_task", "spec_path"]

TASKS_DIR = "tasks"  # in the project: tasks/<name>.yaml, with tasks/<name>.gates.yaml beside it


def spec_path(ref: str, root: Path) -> Path | None:
    """The spec file a task reference points at in the project at ``root`` (None for ``module:Class``)."""
    if ":" in ref:
        return None
    if ref.endswith((".yaml", ".yml")):
        path = Path(ref)
        return path if path.is_absolute() else root / path
    return root / TASKS_DIR / f"{ref}.yaml"


def load_task(ref: str, root: Path) -> Task:
    """Load a task by spec name (``tasks/<name>.yaml`` in the project at ``root``), spec path or ``module:Class``."""
    path = spec_path(ref, root)
    if path is None:
        module, _, name = ref.partition(":")
        task = getattr(importlib.import_module(module), name)()
        if not isinstance(task, Task):
            raise TypeError(f"task {ref!r} must be a slmops.tasks.Task, got {type(task).__name__}")
        return task
    if not path.exists():
        known = sorted(p.stem for p in (root / TASKS_DIR).glob("*.yaml") if not p.stem.endswith(".gates"))
        raise FileNotFoundError(f"task spec {path} does not exist; the project's specs: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return Task(check_spec(data, str(path)))
