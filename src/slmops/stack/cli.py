"""``slmops stack up | down | status``: the Typer sub-app (added to ``slmops`` in ``slmops/cli.py``).

Usage:
    export SLMOPS_STACK_PG_PASSWORD=... SLMOPS_STACK_S3_ACCESS_KEY=... SLMOPS_STACK_S3_SECRET_KEY=...
    slmops stack up          # idempotent; waits for every part's health; writes .slmops/stack/endpoints.json
    slmops stack status      # each part with its URL; exit 1 when one is down
    slmops stack down        # stops what up started; the data stays
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

stack_app = typer.Typer(
    help="The team's stack on loopback: PostgreSQL, S3 (SeaweedFS), MLflow and Prefect servers, workers.",
    no_args_is_help=True,
)

Project = Annotated[
    Path | None,
    typer.Option(
        "--project",
        envvar="SLMOPS_PROJECT",
        show_default="the nearest folder with slmops.yaml, from the working directory up",
        help="The project whose slmops.yaml has the `stack:` section.",
    ),
]
Profile = Annotated[str | None, typer.Option("--profile", envvar="SLMOPS_PROFILE", help="Params profile.")]


def _stack(project: Path | None, profile: str | None):
    """The project's root and its ``stack:`` section; exit 2 naming the problem."""
    from slmops.config import ParamsError, load_params
    from slmops.config.project import ProjectNotFound, find_project

    try:
        root = find_project(project)
        params = load_params(profile, project=root)
    except (ProjectNotFound, ParamsError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if params.stack is None:
        typer.echo(
            f"{root / 'slmops.yaml'}: no `stack:` section; add one (`stack: {{}}` takes every default)", err=True
        )
        raise typer.Exit(2)
    return root, params.stack


def _fail(err: Exception) -> typer.Exit:
    typer.echo(f"stack: {err}", err=True)
    return typer.Exit(1)


@stack_app.command("up")
def up(project: Project = None, profile: Profile = None) -> None:
    """Start every part that is not running, wait for its health, write the endpoints file."""
    from slmops.stack.control import up as stack_up
    from slmops.stack.procs import StackError

    root, cfg = _stack(project, profile)
    try:
        endpoints = stack_up(cfg, root, echo=typer.echo)
    except StackError as err:
        raise _fail(err) from None
    typer.echo(f"MLflow {endpoints.mlflow} · Prefect {endpoints.prefect_ui} · DVC remote {endpoints.dvc_remote}")


@stack_app.command("down")
def down(project: Project = None, profile: Profile = None) -> None:
    """Stop the workers, the servers and PostgreSQL that `up` started; keep every part's data."""
    from slmops.stack.control import down as stack_down
    from slmops.stack.procs import StackError

    root, cfg = _stack(project, profile)
    try:
        stack_down(cfg, root, echo=typer.echo)
    except StackError as err:
        raise _fail(err) from None


@stack_app.command("status")
def status(project: Project = None, profile: Profile = None) -> None:
    """Each part with its URL and health; exit 1 when any is down."""
    from slmops.stack.control import status as stack_status

    root, cfg = _stack(project, profile)
    parts = stack_status(cfg, root)
    for part in parts:
        typer.echo(part.line())
    if not all(part.healthy for part in parts):
        raise typer.Exit(1)
