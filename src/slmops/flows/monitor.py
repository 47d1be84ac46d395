"""Monitor flow: drift on the inference log -> the trigger policy -> a retrain, every decision recorded.

Usage:
    slmops monitor --profile demo              # one window: report, decide, maybe retrain
    slmops monitor --profile demo --no-retrain # report only

Each run is one MLflow run (experiment ``<experiment>-monitor``) holding the drift report and the trigger's
decision: started, or suppressed and why (no drift, not enough consecutive drifted windows, the same window
again, cooldown, too few new harvestable rows, another retrain running). The decision is taken under the
work dir's retrain lock. A retrain that starts runs as the ``slmops-retrain`` deployment (its own flow run
in the Prefect UI) when ``PREFECT_API_URL`` points at a server where ``slmops schedule`` registered it, else
as a subflow here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, task

from slmops.config import Params, load_params
from slmops.flows.loop import retrain_locks
from slmops.flows.runtime import tracking
from slmops.flows.stages import Ctx
from slmops.loop.trigger import RetrainRunning, TriggerDecision, TriggerStore

DRIFT_DEPLOYMENT = "slmops-retrain/drift-retrain"


@task(name="drift-report")
def drift_report(ctx: Ctx) -> dict[str, Any]:
    import mlflow

    from slmops.loop import monitor

    layout = ctx.layout
    reference = layout.synthetic / "train.jsonl"
    if not reference.exists():
        reference = layout.prepared / "train.jsonl"
    result = monitor.run(
        ctx.params.monitor,
        task=ctx.task,
        reference=reference,
        log=layout.inference_log,
        out_dir=layout.reports / "monitor",
    )
    mlflow.set_tag("drift_detected", str(result.drift_detected).lower())
    mlflow.log_metrics({"drift_share": result.drift_share, "rows_current": result.rows_current})
    mlflow.log_metrics({f"signal.{s.name}": float(s.drifted) for s in result.signals})
    mlflow.log_artifact(str(layout.reports / "monitor" / "drift.json"))
    if result.report_html is not None:
        mlflow.log_artifact(str(result.report_html))
    return result.model_dump(mode="json")


def decide_retrain(ctx: Ctx, drift: dict[str, Any], enabled: bool) -> TriggerDecision:
    """The trigger policy on this window, under the retrain lock (a running retrain suppresses it)."""
    from slmops.loop.harvest import pending_rows

    layout, cfg = ctx.layout, ctx.params
    store = TriggerStore(layout.state / "trigger.json")
    if not enabled:
        return store.suppress("retraining on drift is off (--no-retrain or monitor.retrain_on_drift: false)")
    try:
        with retrain_locks(ctx):
            new_rows = pending_rows(layout.inference_log, layout.traffic, cfg.harvest.min_chars)
            return store.observe(
                cfg.loop.trigger, drift=drift["drift_detected"], window_id=drift["window_end_id"], new_rows=new_rows
            )
    except RetrainRunning as busy:
        return store.suppress(str(busy))


def start_retrain(profile: str | None, work_dir: str, overrides: list[str]) -> dict[str, Any]:
    """The retrain deployment on the Prefect server when there is one, else the retrain flow as a subflow."""
    if os.environ.get("PREFECT_API_URL"):
        from prefect.deployments import run_deployment

        params = {"profile": profile, "work_dir": work_dir, "reason": "drift", "overrides": overrides}
        try:
            run = run_deployment(DRIFT_DEPLOYMENT, parameters=params, timeout=0)
            print(f"retrain deployment {DRIFT_DEPLOYMENT} scheduled: flow run {run.name} ({run.id})")
            return {"deployment": DRIFT_DEPLOYMENT, "flow_run_id": str(run.id)}
        except Exception as error:  # no such deployment on this server: run it here rather than lose it
            print(f"could not start {DRIFT_DEPLOYMENT} ({error}); running the retrain here")
    from slmops.flows.loop import retrain

    return retrain(profile=profile, work_dir=work_dir, reason="drift", overrides=overrides)


@flow(name="slmops-monitor")
def monitor_flow(
    profile: str | None = None, work_dir: str = ".", retrain: bool = True, overrides: list[str] | None = None
) -> dict[str, Any]:
    import mlflow

    params: Params = load_params(profile, project=Path(work_dir), overrides=overrides or [])
    ctx = Ctx(params, Path(work_dir).resolve())
    tracking(ctx.root, params.project.experiment + "-monitor")
    with mlflow.start_run(run_name="monitor"):
        result = drift_report(ctx)
        decision = decide_retrain(ctx, result, retrain and params.monitor.retrain_on_drift)
        mlflow.set_tags({"retrain": "started" if decision.start else "suppressed", "retrain_reason": decision.reason})
        mlflow.log_metrics({"consecutive_drifted_windows": decision.consecutive})
    drifted = ", ".join(result["drifted_columns"][:6]) or "none"
    print(f"drift: {'yes' if result['drift_detected'] else 'no'} (rows {result['rows_current']}; drifted: {drifted})")
    print(decision.line())
    result["decision"] = decision.model_dump(mode="json")
    if decision.start:
        result["retrain"] = start_retrain(profile, work_dir, overrides or [])
    return result
