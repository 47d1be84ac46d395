"""Model commands: evaluate any model on any file, promote, roll back, alias history, serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from slmops.cli.common import Overrides, Profile, Stage, WorkDir, app, load_model, setup


@app.command()
def evaluate(
    model: Annotated[
        str, typer.Option(help="A registry alias (poc, pilot, prod) or a local model folder (ONNX or transformers).")
    ],
    data: Annotated[
        Path, typer.Option(help="A labelled JSONL/CSV/Parquet file in the task's terms (input + output fields).")
    ],
    profile: Profile = None,
    work_dir: WorkDir = None,
) -> None:
    """Evaluate a model on any labelled file, reading each input as the server's model does; the last stdout
    line is the metrics as one JSON object."""
    params = setup(work_dir, profile)
    from slmops.evaluate.stage import evaluate_model, served_inputs
    from slmops.tasks import load_task

    task = load_task(params.task, work_dir.resolve())
    rejects: list[dict] = []
    rows = served_inputs(data, params, task, rejects)
    for r in rejects:
        typer.echo(f"skipped {r['file']}:{r['line']}: {r['reason']}", err=True)
    if not rows:
        typer.echo(f"{data}: no valid rows", err=True)
        raise typer.Exit(2)
    chat_model = load_model(model, params, work_dir)
    metrics, _ = evaluate_model(chat_model, task, rows, params.evaluate.max_new_tokens)
    metrics["n"] = int(metrics["n"])
    typer.echo(json.dumps(metrics))


@app.command()
def promote(
    to: Annotated[str, typer.Option("--to", help="Target alias: pilot or prod.")],
    profile: Profile = None,
    work_dir: WorkDir = None,
) -> None:
    """Move the model up one stage (poc -> pilot -> prod) if it passes that stage's gates."""
    params = setup(work_dir, profile)
    from slmops.flows.promote import promote as do_promote

    decision = do_promote(params, work_dir, to)
    typer.echo(json.dumps(decision, indent=2))
    raise typer.Exit(0 if decision["passed"] else 1)


@app.command()
def rollback(stage: Stage = "prod", profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Point an alias back at the version that held it before."""
    params = setup(work_dir, profile)
    from slmops.flows.promote import rollback as do_rollback

    try:
        version = do_rollback(params, work_dir, stage)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{params.model_name}@{stage} -> version {version}")


@app.command()
def history(stage: Stage = "prod", profile: Profile = None, work_dir: WorkDir = None) -> None:
    """List which versions held an alias, and when."""
    params = setup(work_dir, profile)
    from slmops.flows.runtime import tracking
    from slmops.registry import aliases as registry

    tracking(work_dir, params.project.experiment)
    for entry in registry.history(params.model_name, stage):
        typer.echo(f"{entry['at']}  version {entry['version']}  ({entry.get('note', '')})")


@app.command(context_settings={"allow_extra_args": True})
def serve(
    ctx: typer.Context,
    alias: Annotated[str | None, typer.Option(help="Serve models:/<registered_model>@<alias>.")] = "prod",
    model_path: Annotated[
        Path | None, typer.Option(help="Serve a local model folder instead of a registry alias.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: params serve.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: params serve.port, 8000).")] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Requests generated together (default: params serve.max_batch_size; 1: off).")
    ] = None,
    fallback: Annotated[
        bool, typer.Option(help="Use the teacher fallback configured in params serve.fallback (if any).")
    ] = True,
    lora_modules: Annotated[
        list[str] | None,
        typer.Option(
            help="LoRA adapters served as their own model names, vLLM's convention: --lora-modules a=path b=path "
            "(default: params serve.lora_modules)."
        ),
    ] = None,
    profile: Profile = None,
    work_dir: WorkDir = None,
    overrides: Overrides = None,
) -> None:
    """Start the OpenAI-compatible server (/v1/chat/completions, /v1/models, /health, /metrics).

    With params `serve.engine` an external OpenAI-compatible engine generates behind this front.

    Limits (body size, max_tokens cap, requests in flight, generation timeout), the teacher fallback and how
    often to look for a new alias holder come from params `serve`. `POST /admin/reload` switches at once.
    """
    params = setup(work_dir, profile, overrides=overrides)
    from contextlib import ExitStack

    import uvicorn

    from slmops.config import Layout
    from slmops.serve.app import create_app
    from slmops.serve.assemble import model_holder, open_fallback
    from slmops.tasks import load_task

    cfg = params.serve if max_batch_size is None else params.serve.model_copy(update={"max_batch_size": max_batch_size})
    if lora_modules or ctx.args:  # `--lora-modules a=p b=p`: the names after the first arrive as extra arguments
        from slmops.inference.lora import parse_lora_modules

        try:
            cfg = cfg.model_copy(update={"lora_modules": parse_lora_modules([*(lora_modules or []), *ctx.args])})
        except ValueError as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(2) from None
    name = params.model_name
    if model_path is None and cfg.engine is None:
        from slmops.flows.runtime import tracking

        tracking(work_dir, params.project.experiment)
    try:
        holder = model_holder(name, alias, model_path, cfg)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    log_path = Layout(root=work_dir.resolve()).inference_log
    host, port = host or cfg.host, port or cfg.port
    with ExitStack() as stack:
        try:
            task = load_task(params.task, work_dir.resolve())
            backstop = open_fallback(stack, cfg, task, params.pii) if fallback else None
        except (FileNotFoundError, ImportError) as err:
            typer.echo(f"teacher fallback: {err}; or serve without it: --no-fallback", err=True)
            raise typer.Exit(2) from None
        typer.echo(
            f"serving {', '.join([name, *getattr(holder.current.model, 'adapters', {})])} "
            f"(version {holder.current.version}"
            f"{', by ' + cfg.engine.base_url if cfg.engine else ''}) on http://{host}:{port}/v1 ; "
            f"inference log: {log_path} ; teacher fallback: {'on' if backstop else 'off'}"
        )
        served = create_app(holder, name, log_path, cfg, fallback=backstop, pii_cfg=params.pii)
        uvicorn.run(served, host=host, port=port)
