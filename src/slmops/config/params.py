"""All params of a run (``Params``), loaded from the project's ``slmops.yaml`` plus a profile overlay.

Usage (inside a project):
    python -c "from slmops.config import load_params; print(load_params('smoke').model_dump_json(indent=2))"

A mistyped or unknown key fails at load time with the key's dotted path and the file it came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from slmops.config.base import Strict
from slmops.config.data import DataConfig, PIIConfig, PrepareConfig, ProjectConfig
from slmops.config.gates import Gates
from slmops.config.loop import DvcConfig, HarvestConfig, LoopConfig, MonitorConfig
from slmops.config.project import PROJECT_FILE, find_project
from slmops.config.serve import EvaluateConfig, QuantizeConfig, ServeConfig
from slmops.config.stack import StackConfig
from slmops.config.teacher import SynthesizeConfig
from slmops.config.train import DISTILL_METHODS, ActiveConfig, DemoConfig, FinetuneConfig
from slmops.tasks import spec_path


class Params(Strict):
    project: ProjectConfig = ProjectConfig()
    # A spec name (tasks/<name>.yaml in the project), a spec path relative to the project, or ``module:Class``.
    task: str = ""  # required: load_params refuses a project that names none
    data: DataConfig = DataConfig()
    # Promotion thresholds: None means the gates beside the task spec (tasks/<name>.gates.yaml); else a file
    # relative to the project.
    gates: str | None = None
    demo: DemoConfig = DemoConfig()
    prepare: PrepareConfig = PrepareConfig()
    synthesize: SynthesizeConfig = SynthesizeConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    active: ActiveConfig = ActiveConfig()  # active distillation rounds after finetune (off by default)
    quantize: QuantizeConfig = QuantizeConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()
    harvest: HarvestConfig = HarvestConfig()
    loop: LoopConfig = LoopConfig()
    dvc: DvcConfig = DvcConfig()
    pii: PIIConfig = PIIConfig()
    # The team's stack (``slmops stack up``); None: the embedded defaults (SQLite MLflow, local Prefect and DVC).
    stack: StackConfig | None = None

    @model_validator(mode="after")
    def _distill_needs_a_local_teacher(self) -> Params:
        method, kind = self.finetune.method, self.synthesize.teacher.kind
        if method in DISTILL_METHODS and kind != "transformers":
            raise ValueError(
                f"finetune.method {method} needs the teacher's token distributions: synthesize.teacher.kind must be "
                f"transformers (a local model sharing the student's tokenizer), not {kind}"
            )
        return self

    @property
    def model_name(self) -> str:
        """The registered model's name: ``project.registered_model``, else derived from the task."""
        if self.project.registered_model:
            return self.project.registered_model
        stem = self.task.rsplit(":", 1)[-1].rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
        return stem.lower().replace("_", "-") + "-slm"


class ParamsError(ValueError):
    """A params file is malformed; the message names the file and the key."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "kind" not in value:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _has_path(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _explain(err: ValidationError, sources: list[tuple[Path, dict[str, Any]]]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in {"openai", "callable", "transformers"}))
        where = next((str(p) for p, d in reversed(sources) if _has_path(d, loc)), str(sources[-1][0]))
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {'.'.join(map(str, loc))}: {message}" if loc else f"{where}: {message}")
    return "invalid params:\n  " + "\n  ".join(lines)


def _validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Strict validation in JSON mode: YAML's strings, numbers and lists, no silent coercion of "3" to 3."""
    return model.model_validate_json(json.dumps(data, default=str))


def _profile_sources(params_dir: Path, profile: str, seen: tuple[str, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """``profiles/<profile>.yaml`` and, first, the profiles it ``extends`` (e.g. ``extends: demo``)."""
    path = params_dir / f"{profile}.yaml"
    if not path.exists():
        raise ParamsError(f"unknown profile {profile!r}: {path} does not exist")
    if profile in seen:
        raise ParamsError(f"{path}: 'extends' loops back to {profile!r}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    return (_profile_sources(params_dir, parent, (*seen, profile)) if parent else []) + [(path, data)]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["finetune.training.epochs=2", "task=review_insights"]`` -> a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {pair!r}: expected dotted.key=value")
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


def resolve_profile(profile: str | None, root: Path) -> str | None:
    """The profile a command runs: ``--profile``, else ``SLMOPS_PROFILE``, else the project's ``default_profile``."""
    if profile:
        return profile
    if os.environ.get("SLMOPS_PROFILE"):
        return os.environ["SLMOPS_PROFILE"]
    return _read_yaml(root / PROJECT_FILE).get("default_profile")


def load_params(
    profile: str | None = None, project: Path | None = None, extra: Path | None = None, overrides: list[str] = ()
) -> Params:
    """Code defaults, overlaid by the project's ``slmops.yaml``, ``profiles/<profile>.yaml`` (and what it
    extends), an extra file and ``--set key=value`` overrides, in that order. ``project``: the project root
    (default: found by walking up from the working directory)."""
    root = Path(project).resolve() if project is not None else find_project()
    if not (root / PROJECT_FILE).is_file():
        raise ParamsError(f"{root}: no {PROJECT_FILE}: not an slmops project (create one with `slmops init`)")
    profile = resolve_profile(profile, root)
    base = _read_yaml(root / PROJECT_FILE)
    base.pop("default_profile", None)
    sources = [(root / PROJECT_FILE, base)]
    sources += _profile_sources(root / "profiles", profile) if profile else []
    if extra is not None:
        sources.append((extra, _read_yaml(extra)))
    if overrides:
        sources.append((Path("--set"), parse_overrides(list(overrides))))
    # Overlays apply to the code's defaults, so a partial section (``augment_sampling: {max_tokens: 48}``) keeps
    # the other defaults of that section, including those a parent sets for it (seed 42, temperature 0.9).
    merged: dict[str, Any] = Params().model_dump(mode="json")
    for _, data in sources:
        merged = deep_merge(merged, data)
    try:
        params = _validate(Params, merged)
    except ValidationError as err:
        raise ParamsError(_explain(err, sources)) from None
    if not params.task:
        raise ParamsError(f"{root / PROJECT_FILE}: task: not set: name your task spec (tasks/<name>.yaml)")
    return params


def load_params_file(path: Path) -> Params:
    """A complete params file, e.g. the resolved one ``slmops dvc`` writes for DVC (its ``code:`` section, the
    stages' code hashes, is DVC's alone)."""
    data = _read_yaml(path)
    data.pop("code", None)
    try:
        return _validate(Params, data)
    except ValidationError as err:
        raise ParamsError(_explain(err, [(path, data)])) from None


def gates_file(params: Params, root: Path) -> Path:
    """The task's gates: ``params.gates`` (relative to the project) or ``<task spec>.gates.yaml`` beside it."""
    if params.gates:
        return root / params.gates
    spec = spec_path(params.task, root)
    if spec is None:
        raise ParamsError(f"task {params.task!r} is a class, not a spec file: set `gates:` to its gates file")
    return spec.with_name(spec.name.removesuffix(spec.suffix) + ".gates.yaml")


def load_gates(path: Path) -> Gates:
    if not path.is_file():
        raise ParamsError(f"{path}: no gates file (each task's gates sit beside its spec: tasks/<name>.gates.yaml)")
    data = _read_yaml(path)
    try:
        return _validate(Gates, data)
    except ValidationError as err:
        raise ParamsError(_explain(err, [(path, data)])) from None
