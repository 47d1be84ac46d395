"""The ``slmops`` command. Every subcommand has ``--help``; heavy libraries load only when a command runs.

Usage:
    slmops demo build --profile demo && slmops run --profile demo
    slmops params --profile demo            # the resolved params; --schema for the JSON schema
    slmops stage finetune --profile demo    # one stage (what dvc.yaml runs)
    slmops stage finetune --processes 2     # finetune in 2 processes (accelerate launch, DDP)
    slmops evaluate --model prod --data data/prepared/test.jsonl
    slmops promote --to pilot && slmops promote --to prod
    slmops serve --alias prod --port 8000
    slmops monitor
    echo "電話は090-1234-5678" | slmops pii mask
    slmops pii scan data/raw/*.jsonl
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from slmops.config.layout import Layout
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


def _find_project(value: Path | None) -> Path:
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
        callback=_find_project,
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


def _setup(
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


@app.command()
def run(profile: Profile = None, work_dir: WorkDir = None, overrides: Overrides = None) -> None:
    """Run the pipeline (Prefect flow, tracked in MLflow) on a params profile: one line per stage, then a table."""
    params = _setup(work_dir, profile, preflight=True, overrides=overrides)
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
    typer.echo("\n" + _table(summary["metrics"]))
    store = os.environ.get("MLFLOW_TRACKING_URI") or Layout(root=work_dir).mlflow_uri
    page = f"#/experiments/{summary['experiment_id']}/runs/{summary['run_id']}?workflowType=machine_learning"
    if store.startswith(("http://", "https://")):  # a tracking server (the team's stack) serves its own UI
        typer.echo(f"\nMLflow run: {summary['run_id']}\nMLflow UI:  {store.rstrip('/')}/{page}")
    else:
        browse = f"browse: mlflow ui --backend-store-uri {store}, or make mlflow-ui"
        typer.echo(f"\nMLflow run: {summary['run_id']}  ({browse})")
        typer.echo(f"MLflow UI:  http://127.0.0.1:5000/{page}")
    typer.echo(f"Reports:    {summary['reports']}")
    typer.echo("poc gate:   " + _gate_line(summary["gate"]))


def _gate_line(gate: dict) -> str:
    if not gate["passed"]:
        return "FAILED: " + "; ".join(gate["reasons"])
    if gate.get("unchanged"):
        return f"passed, version {gate.get('version', '?')} already holds poc (same model, nothing registered)"
    return "passed, registered version " + gate.get("version", "?")


@demo_app.command("build")
def demo_build(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Build the offline demo's stand-ins: data from the task's generator, a tokenizer, a tiny base model."""
    _setup(work_dir, profile)
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
            help="finetune only: train in this many processes under accelerate launch (DDP; one per GPU, or CPU "
            "processes over gloo). Sets finetune.processes for this run; batch_size is per process.",
        ),
    ] = None,
) -> None:
    """Run one stage, cached by content (what dvc.yaml's commands run). Not tracked in MLflow."""
    if processes is not None and name != "finetune":
        typer.echo("--processes applies to the finetune stage only", err=True)
        raise typer.Exit(2)
    params = _setup(work_dir, profile, params_file)
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
    params = _setup(work_dir, profile)
    typer.echo(yaml.safe_dump(params.model_dump(mode="json"), allow_unicode=True, sort_keys=False))


@app.command()
def dvc(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Write dvc.yaml and params.yaml (the resolved profile) from the stage registry."""
    params = _setup(work_dir, profile)
    from slmops.flows.versioning import write_dvc_files

    for path in write_dvc_files(params, resolve_profile(profile, work_dir) or "default", work_dir):
        typer.echo(f"wrote {path}")


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
    params = _setup(work_dir, profile)
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
    chat_model = _load_model(model, params, work_dir)
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
    params = _setup(work_dir, profile)
    from slmops.flows.promote import promote as do_promote

    decision = do_promote(params, work_dir, to)
    typer.echo(json.dumps(decision, indent=2))
    raise typer.Exit(0 if decision["passed"] else 1)


@app.command()
def rollback(stage: Stage = "prod", profile: Profile = None, work_dir: WorkDir = None) -> None:
    """Point an alias back at the version that held it before."""
    params = _setup(work_dir, profile)
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
    params = _setup(work_dir, profile)
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
    params = _setup(work_dir, profile, overrides=overrides)
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


@app.command()
def monitor(
    profile: Profile = None,
    work_dir: WorkDir = None,
    retrain: Annotated[bool, typer.Option(help="Start the retraining flow when drift is found.")] = True,
    overrides: Overrides = None,
) -> None:
    """Drift report (Evidently) on the latest window of inference traffic; the trigger policy decides whether to
    retrain (K drifted windows in a row, cooldown, enough new rows) and every decision is logged to MLflow."""
    _setup(work_dir, profile, overrides=overrides)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.monitor import monitor_flow

    result = monitor_flow(profile=profile, work_dir=str(work_dir), retrain=retrain, overrides=overrides or [])
    report = Layout(root=Path(work_dir)).drift_report
    typer.echo(f"drift report: {report}" if report.exists() else f"no report: {result.get('reason')}")
    if (result.get("retrain") or {}).get("gate"):  # a retrain ran here (not as a deployment): how it ended
        typer.echo("retrain poc gate: " + _gate_line(result["retrain"]["gate"]))


@app.command()
def retrain(profile: Profile = None, work_dir: WorkDir = None, overrides: Overrides = None) -> None:
    """Retrain now (what the weekly schedule runs): harvest logged traffic, teacher labels, train, then register
    only a challenger that beats the poc champion on the same gold and recent-traffic rows."""
    _setup(work_dir, profile, preflight=True, overrides=overrides)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.loop import retrain as retrain_flow

    result = retrain_flow(profile=profile, work_dir=str(work_dir), reason="scheduled", overrides=overrides or [])
    if result.get("started"):
        typer.echo("\n" + _table(result["metrics"]))
        typer.echo("poc gate:   " + _gate_line(result["gate"]))


@loop_app.command("demo")
def loop_demo(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """After `make demo`: serve poc, send in-distribution then shifted traffic with the openai client, let the
    monitor trigger a retrain, and print accuracy before and after with the wall time of every step."""
    params = _setup(work_dir, profile)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.loop_demo import run_demo, table

    out = run_demo(params, profile, work_dir)
    metric = headline_metric(params, work_dir)
    typer.echo("\n" + table(out, metric))
    report = Layout(root=Path(work_dir)).loop_demo_report
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps(out, indent=1, default=str))


def headline_metric(params, work_dir: Path) -> str:
    """The accuracy of the task's stratifying enum field (e.g. category_accuracy), else exact match."""
    from slmops.tasks import load_task

    task = load_task(params.task, work_dir.resolve())
    return f"{task.stratify_by}_accuracy" if task.stratify_by else "exact_match"


@app.command()
def schedule(
    profile: Profile = None,
    work_dir: WorkDir = None,
    retrain_cron: Annotated[str, typer.Option(help="Cron for the retraining flow.")] = "0 3 * * 1",
    monitor_cron: Annotated[str, typer.Option(help="Cron for the monitor flow.")] = "0 * * * *",
) -> None:
    """Register the weekly-retrain and hourly-monitor deployments with a running `prefect server` and serve them."""
    _setup(work_dir, profile)
    from slmops.flows.deployments import serve_deployments

    serve_deployments(profile, str(work_dir.resolve()), retrain_cron, monitor_cron)


def _pii_config(profile: str | None):
    """The project's ``pii`` params; outside a project, the code defaults (every entity type)."""
    from slmops.config import ParamsError, PIIConfig, load_params
    from slmops.config.project import ProjectNotFound, find_project

    try:
        root = find_project()
    except ProjectNotFound:
        return PIIConfig()
    try:
        return load_params(profile, project=root).pii
    except ParamsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


@pii_app.command("mask")
def pii_mask(profile: Profile = None) -> None:
    """Read text lines on stdin, write them masked (NFKC + typed placeholders such as [NAME], [PHONE]) to stdout."""
    from slmops.text.pii import mask

    cfg = _pii_config(profile)
    for line in sys.stdin:
        sys.stdout.write(mask(line.rstrip("\n"), cfg=cfg) + "\n")


@pii_app.command("scan")
def pii_scan(
    files: Annotated[list[Path], typer.Argument(help="JSONL, CSV/TSV or plain-text files.")],
    profile: Profile = None,
) -> None:
    """Report suspected PII as file:line: TYPE (field), never the value. Exit 1 if any is found, 2 on a bad file."""
    from slmops.text.pii.scan import scan_file

    cfg = _pii_config(profile)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(f"not a readable file: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    counts: Counter[str] = Counter()
    for path in files:
        for finding in scan_file(path, cfg):
            typer.echo(str(finding))
            counts[finding.label] += 1
    summary = ", ".join(f"{label} {n}" for label, n in counts.most_common()) or "nothing"
    typer.echo(f"suspected PII in {len(files)} file(s): {summary}", err=True)
    if counts:
        raise typer.Exit(1)


def _load_model(model: str, params, work_dir: Path):
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


def _table(metrics: dict[str, dict[str, float]]) -> str:
    """One row per model, one column per metric (the task's, then validity, latency and size)."""
    tail = ["json_valid_rate", "exact_match", "latency_p50_ms", "latency_p95_ms", "size_mb"]
    found = {k for m in metrics.values() for k in m} - {"n"}
    cols = sorted(found - set(tail)) + [c for c in tail if c in found]
    width, first = max(map(len, cols)) + 2, max(len("model"), *map(len, metrics)) + 2
    lines = [f"{'model':<{first}}" + "".join(f"{c:>{width}}" for c in cols)]
    for name, m in metrics.items():
        lines.append(f"{name:<{first}}" + "".join(f"{m[c]:>{width}.3f}" if c in m else f"{'-':>{width}}" for c in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    app()
