"""The scheduled runs: a weekly retrain, an hourly monitor and the unscheduled drift-retrain the monitor starts."""

from __future__ import annotations

from slmops.flows.deployments import build_deployments
from slmops.flows.monitor import DRIFT_DEPLOYMENT


def test_the_schedule_holds_the_retrain_the_monitor_starts():
    found = {d.name: d for d in build_deployments("demo", "/srv/work", "0 3 * * 1", "0 * * * *")}
    assert set(found) == {"weekly-retrain", "drift-retrain", "hourly-monitor"}
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in found.items()}
    assert crons == {"weekly-retrain": ["0 3 * * 1"], "drift-retrain": [], "hourly-monitor": ["0 * * * *"]}
    assert found["weekly-retrain"].parameters == {"profile": "demo", "work_dir": "/srv/work", "reason": "scheduled"}
    assert found["drift-retrain"].parameters["reason"] == "drift"
    flow_name, deployment = DRIFT_DEPLOYMENT.split("/")
    assert found[deployment].flow_name == flow_name  # run_deployment("slmops-retrain/drift-retrain") finds it
