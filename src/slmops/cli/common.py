"""What every ``slmops`` command shares: the Typer apps, the project/profile options, params set-up and the
console table. The commands live beside this file by concern (project, models, loop, pii); ``slmops.cli``
registers them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmops.flows.runtime import configure
from slmops.stack.cli import stack_app

app = typer.Typer(
    help="slmops: distil a teacher LLM into a small model you own, ship it, watch it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
pii_app = typer.Typer(help="PII tools: the same masking the prepare stage applies.", no_args_is_help=True)
app.add_typer(pii_app, name="pii")
demo_app = typer.Typer(
    help="The offline demo's stand-ins (generated data, tokenizer, base model).", no_args_is_help=True
)
app.add_typer(demo_app, name="demo")
loop_app = typer.Typer(help="The continuous-improvement loop, shown end to end.", no_args_is_help=True)
app.add_typer(loop_app, name="loop")
app.add_typer(stack_app, name="stack")


def project_option(value: Path | None) -> Path:
    """The project root: ``--project``, else the nearest folder holding slmops.yaml at or above the cwd."""
    from slmops.config.project import ProjectNotFound, find_project, use_project

    try:
        root = find_project(value)
    except ProjectNotFound as err:
        raise typer.BadParameter(str(err)) from None
    use_project(root)  # the project's own modules (a callable teacher, a Task class) are importable
    return root


WorkDir = Annotated[
    Path,
    typer.Option(
        "--project",
        "--work-dir",
        envvar="SLMOPS_PROJECT",
        callback=project_option,
        show_default="the nearest folder with slmops.yaml, from the working directory up",
        help="The project: slmops.yaml, profiles, tasks, and the data, models, MLflow and Prefect state.",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="SLMOPS_PROFILE",
        show_default="the project's default_profile",
        help="Params profile: slmops.yaml + profiles/<profile>.yaml (and what it extends).",
    ),
]
Stage = Annotated[str, typer.Option(help="Registry alias: poc, pilot or prod.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one param for this run: dotted.key=value (repeatable), e.g. --set finetune.training.epochs=2",
    ),
]


def resolve_profile(profile: str | None, root: Path) -> str | None:
    from slmops.config import resolve_profile as resolve

    return resolve(profile, root)


def setup(
    work_dir: Path, profile: str | None, params_file: Path | None = None, preflight: bool = False, overrides=None
):
    """Load params (exit 2 naming the key on a bad file), set up the work dir's state, check before running."""
    from slmops.config import ParamsError, load_params, load_params_file

    try:
        if params_file:
            params = load_params_file(params_file)
        else:
            params = load_params(profile, project=work_dir, overrides=overrides or [])
    except ParamsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if params.stack is not None:  # the team's stack: its servers, from the endpoints `slmops stack up` wrote
        from slmops.stack.endpoints import StackNotUp, use_stack

        try:
            use_stack(params.stack, work_dir)
        except StackNotUp as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(2) from None
    configure(work_dir, offline=params.project.offline)
    if preflight:
        from slmops.config.preflight import check

        problems = check(params, work_dir.resolve())
        if problems:
            typer.echo("cannot start:\n  " + "\n  ".join(problems), err=True)
            raise typer.Exit(2)
    return params


def gate_line(gate: dict) -> str:
    if not gate["passed"]:
        return "FAILED: " + "; ".join(gate["reasons"])
    if gate.get("unchanged"):
        return f"passed, version {gate.get('version', '?')} already holds poc (same model, nothing registered)"
    return "passed, registered version " + gate.get("version", "?")


def load_model(model: str, params, work_dir: Path):
    from slmops.inference.chat_model import ChatModel

    if Path(model).exists():
        return ChatModel.load(Path(model))
    from slmops.flows.runtime import tracking
    from slmops.registry import aliases as registry

    tracking(work_dir, params.project.experiment)
    try:
        return registry.load_chat_model(params.model_name, model)[0]
    except ValueError as err:
        typer.echo(f"{model!r} is neither a folder nor a usable alias: {err}", err=True)
        raise typer.Exit(2) from None


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """One row per model, one column per metric (the task's, then validity, latency and size)."""
    tail = ["json_valid_rate", "exact_match", "latency_p50_ms", "latency_p95_ms", "size_mb"]
    found = {k for m in metrics.values() for k in m} - {"n"}
    cols = sorted(found - set(tail)) + [c for c in tail if c in found]
    width, first = max(map(len, cols)) + 2, max(len("model"), *map(len, metrics)) + 2
    lines = [f"{'model':<{first}}" + "".join(f"{c:>{width}}" for c in cols)]
    for name, m in metrics.items():
        lines.append(f"{name:<{first}}" + "".join(f"{m[c]:>{width}.3f}" if c in m else f"{'-':>{width}}" for c in cols))
    return "\n".join(lines)
