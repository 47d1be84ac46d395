"""Flow runs whose machine died: heartbeats from every flow run the workers start, and an automation on the
Prefect server that marks a run CRASHED when its heartbeats stop (Prefect's "detect zombie flows" recipe).

A worker reports its own flow run as CRASHED when that process dies under it. When the worker dies too (the
machine goes, the process group is killed), nobody reports: without this the run stays RUNNING for ever, and
the next retrain on the team's lock waits behind a ghost. With it, the run turns CRASHED ``zombie_after_s``
after its last heartbeat, and the next run resumes from the stage cache and the training checkpoint.

Usage:
    env |= heartbeat_env(cfg)                 # a worker's environment: its flow runs emit heartbeats
    ensure_zombie_automation(cfg)             # once the server is up; True when it created it
"""

from __future__ import annotations

from datetime import timedelta

from slmops.config.stack import StackConfig
from slmops.stack import access
from slmops.stack.procs import StackError

AUTOMATION = "slmops: crash flow runs that stop sending heartbeats"
FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def heartbeat_env(cfg: StackConfig) -> dict[str, str]:
    """What makes a worker's flow runs emit ``prefect.flow-run.heartbeat`` every ``heartbeat_s``."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(cfg.prefect.heartbeat_s)}


def automation_body(cfg: StackConfig) -> dict:
    """The automation as the server's REST API takes it: a proactive trigger per flow run."""
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    expected = {"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{name}" for name in FINAL)}
    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect=expected,
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=cfg.prefect.zombie_after_s),
    )
    message = f"no heartbeat for {cfg.prefect.zombie_after_s} s: its worker or machine died (slmops stack)"
    action = ChangeFlowRunState(state=StateType.CRASHED, message=message)
    automation = AutomationCore(name=AUTOMATION, trigger=trigger, actions=[action])
    return automation.model_dump(mode="json")


def ensure_zombie_automation(cfg: StackConfig) -> bool:
    """Create the automation unless one of its name exists; True when it created it."""
    import httpx

    base, headers = f"http://{cfg.host}:{cfg.prefect.port}/api/automations", access.prefect_headers(cfg)
    body = {"automations": {"name": {"any_": [AUTOMATION]}}}
    found = httpx.post(f"{base}/filter", json=body, headers=headers, timeout=30)
    if found.status_code == 200 and found.json():
        return False
    created = httpx.post(f"{base}/", json=automation_body(cfg), headers=headers, timeout=30)
    if created.status_code != 201:
        raise StackError(f"creating the zombie-run automation: HTTP {created.status_code} {created.text[:300]}")
    return True
