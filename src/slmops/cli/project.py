"""Project commands: init, run, demo build, stage, params, dvc."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from slmops.cli.common import (
    Overrides,
    Profile,
    WorkDir,
    app,
    demo_app,
    gate_line,
    metrics_table,
    resolve_profile,
    setup,
)
from slmops.config.layout import Layout


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="The new project's folder (created if missing).")],
    example: Annotated[
        str | None,
        typer.Option(
            help="Start from an example project that ships with slmops (a wrong name lists them); default: blank."
        ),
    ] = None,
) -> None:
    """Write a new project: slmops.yaml, profiles/, tasks/ with each task's gates, .gitignore, git + DVC, dvc.yaml."""
    from slmops.config import load_params
    from slmops.config.project import ProjectNotFound, init_project
    from slmops.flows.versioning import write_dvc_files

    try:
        root = init_project(directory, example)
    except (ProjectNotFound, RuntimeError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    params = load_params(project=root)
    write_dvc_files(params, resolve_profile(None, root) or "default", root)
    typer.echo(f"slmops project in {root} ({example or 'blank'}): task {params.task}")
    for line in sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
    ):
        if not line.startswith(".dvc/"):
            typer.echo(f"  {line}")
    start = "slmops demo build && slmops run" if example else "put your data in data/, then slmops run"
    typer.echo(f"next: cd {directory} && {start}")


@app.command()
def run(profile: Profile = None, work_dir: WorkDir = None, overrides: Overrides = None) -> None:
    """Run the pipeline (Prefect flow, tracked in MLflow) on a params profile: one line per stage, then a table."""
    params = setup(work_dir, profile, preflight=True, overrides=overrides)
    from slmops.flows.runtime import quiet_console

    log_file = quiet_console(work_dir)
    from slmops.flows.pipeline import pipeline

    shown = resolve_profile(profile, work_dir)
    typer.echo(f"slmops run: task {params.task}, profile {shown or '(none)'}, project {work_dir} (log: {log_file})")
    from slmops.registry.aliases import RegistrationError

    try:
        summary = pipeline(profile=profile, work_dir=str(work_dir), overrides=overrides or [])
    except RegistrationError as err:  # the stages' results stay cached: a rerun goes straight to registration
        typer.echo(f"registration failed: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo("\n" + metrics_table(summary["metrics"]))
    store = os.environ.get("MLFLOW_TRACKING_URI") or Layout(root=work_dir).mlflow_uri
    page = f"#/experiments/{summary['experiment_id']}/runs/{summary['run_id']}?workflowType=machine_learning"
    if store.startswith(("http://", "https://")):  # a tracking server (the team's stack) serves its own UI
        typer.echo(f"\nMLflow run: {summary['run_id']}\nMLflow UI:  {store.rstrip('/')}/{page}")
    else:
        browse = f"browse: mlflow ui --backend-store-uri {store}, or make mlflow-ui"
        typer.echo(f"\nMLflow run: {summary['run_id']}  ({browse})")
        typer.echo(f"MLflow UI:  http://127.0.0.1:5000/{page}")
    typer.echo(f"Reports:    {summary['reports']}")
    typer.echo("poc gate:   " + gate_line(summary["gate"]))


@demo_app.command("build")
def demo_build(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Build the offline demo's stand-ins: data from the task's generator, a tokenizer, a tiny base model."""
    setup(work_dir, profile)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.pipeline import demo_build as build

    typer.echo(f"slmops demo build: profile {resolve_profile(profile, work_dir)}, project {work_dir}")
    build(profile=profile, work_dir=str(work_dir))


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="A stage of the registry (src/slmops/flows/stages.py), e.g. prepare.")],
    profile: Profile = None,
    params_file: Annotated[
        Path | None, typer.Option(help="A complete params file (DVC's params.yaml) instead of --profile.")
    ] = None,
    work_dir: WorkDir = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="finetune only: train in this many processes under accelerate launch (DDP, or FSDP with "
            "finetune.method full; one per GPU, or CPU processes over gloo). Sets finetune.processes for this run; "
            "batch_size is per process.",
        ),
    ] = None,
    overrides: Overrides = None,
) -> None:
    """Run one stage, cached by content (what dvc.yaml's commands run). Not tracked in MLflow."""
    if processes is not None and name != "finetune":
        typer.echo("--processes applies to the finetune stage only", err=True)
        raise typer.Exit(2)
    if overrides and params_file:
        typer.echo("--set does not apply to a complete --params-file: edit the file", err=True)
        raise typer.Exit(2)
    params = setup(work_dir, profile, params_file, overrides=overrides)
    if processes is not None:  # also over a complete --params-file, which takes no overrides
        params = params.model_copy(update={"finetune": params.finetune.model_copy(update={"processes": processes})})
    from slmops.flows.runner import run_stage
    from slmops.flows.runtime import quiet_console
    from slmops.flows.stages import STAGES, Ctx

    if name not in STAGES:
        typer.echo(f"unknown stage {name!r}; stages: {', '.join(STAGES)}", err=True)
        raise typer.Exit(2)
    quiet_console(work_dir)
    run_stage(STAGES[name], Ctx(params, work_dir.resolve()), track=False)


@app.command("params")
def show_params(
    profile: Profile = None,
    work_dir: WorkDir = None,
    schema: Annotated[bool, typer.Option(help="Print the JSON schema of every key, with defaults.")] = False,
) -> None:
    """Print the resolved params (code defaults + slmops.yaml + the profile) as YAML."""
    import yaml

    from slmops.config import Params

    if schema:
        typer.echo(json.dumps(Params.model_json_schema(), indent=2, ensure_ascii=False))
        return
    params = setup(work_dir, profile)
    typer.echo(yaml.safe_dump(params.model_dump(mode="json"), allow_unicode=True, sort_keys=False))


@app.command()
def dvc(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Write dvc.yaml and params.yaml (the resolved profile) from the stage registry."""
    params = setup(work_dir, profile)
    from slmops.flows.versioning import write_dvc_files

    for path in write_dvc_files(params, resolve_profile(profile, work_dir) or "default", work_dir):
        typer.echo(f"wrote {path}")
