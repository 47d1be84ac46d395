"""Scheduled runs: weekly retraining and hourly monitoring as Prefect deployments, plus the unscheduled
``drift-retrain`` deployment that the monitor starts when its trigger fires.

Usage (needs a running server: ``prefect server start`` and ``PREFECT_API_URL=http://127.0.0.1:4200/api``):
    slmops schedule --profile demo
"""

from __future__ import annotations

import os


def build_deployments(profile: str | None, work_dir: str, retrain_cron: str, monitor_cron: str) -> list:
    from slmops.flows.loop import retrain
    from slmops.flows.monitor import monitor_flow

    where = {"profile": profile, "work_dir": work_dir}
    return [
        retrain.to_deployment(name="weekly-retrain", cron=retrain_cron, parameters=where | {"reason": "scheduled"}),
        retrain.to_deployment(name="drift-retrain", parameters=where | {"reason": "drift"}),
        monitor_flow.to_deployment(
            name="hourly-monitor", cron=monitor_cron, parameters={"profile": profile, "work_dir": work_dir}
        ),
    ]


def serve_deployments(profile: str | None, work_dir: str, retrain_cron: str, monitor_cron: str) -> None:
    """Register both deployments and run them on schedule in this process (Ctrl-C stops)."""
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit(
            "slmops schedule needs a Prefect server: run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect import serve

    serve(*build_deployments(profile, work_dir, retrain_cron, monitor_cron))
