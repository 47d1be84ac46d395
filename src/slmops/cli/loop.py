"""Loop commands: monitor, retrain, schedule, and the loop demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from slmops.cli.common import Overrides, Profile, WorkDir, app, gate_line, loop_app, metrics_table, setup
from slmops.config.layout import Layout


@app.command()
def monitor(
    profile: Profile = None,
    work_dir: WorkDir = None,
    retrain: Annotated[bool, typer.Option(help="Start the retraining flow when drift is found.")] = True,
    overrides: Overrides = None,
) -> None:
    """Drift report (Evidently) on the latest window of inference traffic; the trigger policy decides whether to
    retrain (K drifted windows in a row, cooldown, enough new rows) and every decision is logged to MLflow."""
    setup(work_dir, profile, overrides=overrides)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.monitor import monitor_flow

    result = monitor_flow(profile=profile, work_dir=str(work_dir), retrain=retrain, overrides=overrides or [])
    report = Layout(root=Path(work_dir)).drift_report
    typer.echo(f"drift report: {report}" if report.exists() else f"no report: {result.get('reason')}")
    if (result.get("retrain") or {}).get("gate"):  # a retrain ran here (not as a deployment): how it ended
        typer.echo("retrain poc gate: " + gate_line(result["retrain"]["gate"]))


@app.command()
def retrain(profile: Profile = None, work_dir: WorkDir = None, overrides: Overrides = None) -> None:
    """Retrain now (what the weekly schedule runs): harvest logged traffic, teacher labels, train, then register
    only a challenger that beats the poc champion on the same gold and recent-traffic rows."""
    setup(work_dir, profile, preflight=True, overrides=overrides)
    from slmops.flows.runtime import quiet_console

    quiet_console(work_dir)
    from slmops.flows.loop import retrain as retrain_flow

    result = retrain_flow(profile=profile, work_dir=str(work_dir), reason="scheduled", overrides=overrides or [])
    if result.get("started"):
        typer.echo("\n" + metrics_table(result["metrics"]))
        typer.echo("poc gate:   " + gate_line(result["gate"]))


@loop_app.command("demo")
def loop_demo(profile: Profile = None, work_dir: WorkDir = None) -> None:
    """After `make demo`: serve poc, send in-distribution then shifted traffic with the openai client, let the
    monitor trigger a retrain, and print accuracy before and after with the wall time of every step."""
    params = setup(work_dir, profile)
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
    """Register the weekly-retrain, drift-retrain and hourly-monitor deployments with a running `prefect server`.

    On the team's stack (a `stack:` section) they go to its process work pool, whose workers run them; the
    command returns. Embedded, this process serves them until Ctrl-C."""
    params = setup(work_dir, profile)
    from slmops.flows.deployments import deploy_to_pool, serve_deployments

    if params.stack is None:
        serve_deployments(profile, str(work_dir.resolve()), retrain_cron, monitor_cron)
        return
    pool = params.stack.prefect.work_pool
    found = deploy_to_pool(profile, str(work_dir.resolve()), retrain_cron, monitor_cron, pool)
    for name, deployment_id in found.items():
        typer.echo(f"deployment {name} ({deployment_id}) on work pool {pool!r}")
