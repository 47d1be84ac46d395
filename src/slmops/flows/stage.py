"""What a stage is: its declaration (``Stage``), what it runs in (``Ctx``), and its computed code.

Usage:
    from slmops.flows.stage import Ctx, stage_code_hash
    ctx = Ctx(load_params("demo", project=root), root)

The registry of every stage is ``stages.py`` beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import Layout, Params, SourceConfig, resolve_model_path
from slmops.config.project import use_project
from slmops.flows.codedeps import code_hash
from slmops.tasks import Task, load_task, spec_path

COMMON_MODULES = ("slmops.config", "slmops.io")  # every stage reads params and writes a manifest


@dataclass(frozen=True)
class Ctx:
    """What a stage needs to find its inputs: the resolved params and the work dir."""

    params: Params
    root: Path

    def __post_init__(self) -> None:
        use_project(self.root)  # the team's own modules (a callable teacher, a Task class), in any process

    @cached_property
    def task(self) -> Task:
        return load_task(self.params.task, self.root)

    @property
    def layout(self) -> Layout:
        return Layout(root=self.root)

    def source(self, src: SourceConfig | None) -> SourceConfig | None:
        """A data source with its path made absolute under the work dir."""
        return None if src is None else src.model_copy(update={"path": str(self.root / src.path)})


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[str, ...]  # dotted keys of the resolved params the stage reads
    modules: tuple[str, ...]  # the modules it runs: their import closure is its code (COMMON_MODULES too)
    inputs: Callable[[Ctx], list[Path]]
    out: Callable[[Ctx], Path]  # the output folder; its manifest.json records the cache key and output hashes
    run: Callable[[Ctx], BaseModel]
    summary: Callable[[dict[str, Any]], str]  # the figure that matters, for the console line
    artifacts: tuple[str, ...] = field(default=())  # files (globs) of the output folder logged to MLflow
    datasets: tuple[tuple[str, str], ...] = field(default=())  # (file in the output folder, MLflow input context)
    metrics: Callable[[Ctx], Path] | None = None  # a flat metrics file for `dvc metrics` / `dvc exp show`
    persist: bool = False  # the output grows across runs (append-only): DVC must not delete it before a run
    params_when: Callable[[Ctx], tuple[str, ...]] = lambda ctx: ()  # keys read only under some params
    modules_when: Callable[[Ctx], tuple[str, ...]] = lambda ctx: ()  # code run only under some params


def stage_params(stage: Stage, ctx: Ctx) -> tuple[str, ...]:
    """The dotted params keys the stage reads under these params (the cache key's and dvc.yaml's)."""
    return stage.params + stage.params_when(ctx)


def code_modules(stage: Stage, ctx: Ctx) -> list[str]:
    """The modules whose import closure is the stage's code: its own, the shared ones, and the task class,
    callable teacher or demo generator the params name (in the package or the team's project)."""
    modules = [*COMMON_MODULES, *stage.modules, *stage.modules_when(ctx)]
    if "task" in stage.params and ":" in ctx.params.task:
        modules.append(ctx.params.task.partition(":")[0])
    teacher = ctx.params.synthesize.teacher
    if any(k.startswith("synthesize") for k in stage_params(stage, ctx)) and teacher.kind == "callable":
        modules.append(teacher.target.partition(":")[0])
    if stage.name == "demo_data" and ctx.task.spec.demo_generator:
        modules.append(ctx.task.spec.demo_generator.partition(":")[0])
    return modules


def stage_code_hash(stage: Stage, ctx: Ctx) -> str:
    """What the cache key and DVC's ``code.<stage>`` param hold for the stage's code."""
    return code_hash(code_modules(stage, ctx), roots=(ctx.root,))


def input_paths(stage: Stage, ctx: Ctx) -> list[Path]:
    """The stage's declared inputs plus the task spec file when it reads ``task``."""
    paths = stage.inputs(ctx)
    spec = spec_path(ctx.params.task, ctx.root) if "task" in stage.params else None
    return paths + ([spec] if spec is not None else [])


def base_model(ctx: Ctx) -> str:
    """What finetune starts from: the champion's weights when ``loop.init_from: champion`` and a champion was
    kept (``Layout.champion``), else ``finetune.base_model`` (a local folder under the work dir, or a hub id)."""
    if ctx.params.loop.init_from == "champion" and (ctx.layout.champion / "config.json").exists():
        return str(ctx.layout.champion)
    return resolve_model_path(ctx.params.finetune.base_model, ctx.root)
