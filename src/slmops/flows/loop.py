"""The continuous-improvement loop's flows: a retrain (harvest -> teacher labels -> train -> champion vs
challenger -> promote) that only one process runs at a time per work dir.

Usage:
    slmops retrain --profile demo          # what the weekly schedule and a drift trigger run
    slmops monitor --profile demo          # drift -> trigger policy -> retrain (src/slmops/flows/monitor.py)

A retrain is the pipeline flow with ``challenge=True``: the harvest and label_traffic stages bring the logged
traffic in, and the new model is registered only when it beats the ``poc`` champion on the same gold and
recent-traffic rows (``src/slmops/loop/challenge.py``). A winner moves on through the pilot/prod gates as far as
``loop.auto_promote_to`` allows; a running server picks the new ``poc`` holder up by its alias hot reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow

from slmops.config import load_params
from slmops.flows.stages import Ctx
from slmops.loop.trigger import RetrainRunning, TriggerStore, retrain_lock


@contextmanager
def retrain_locks(ctx: Ctx) -> Iterator[None]:
    """The work dir's lock (``flock``), then, on the team's stack, the lock every machine shares (a PostgreSQL
    advisory lock, ``src/slmops/stack/lock.py``); either one held elsewhere raises ``RetrainRunning``."""
    from slmops.stack.lock import team_retrain_lock

    with retrain_lock(ctx.layout.state / "retrain.lock"), team_retrain_lock(ctx.params.stack, ctx.params.model_name):
        yield


@flow(name="slmops-retrain")
def retrain(
    profile: str | None = None, work_dir: str = ".", reason: str = "scheduled", overrides: list[str] | None = None
) -> dict[str, Any]:
    """One retrain under the work dir's retrain lock; a second one while it runs is recorded and skipped.
    ``reason``: why it started (a schedule marks the trigger's cooldown; a drift trigger already did)."""
    from slmops.flows.pipeline import pipeline

    params = load_params(profile, project=Path(work_dir), overrides=overrides or [])
    ctx = Ctx(params, Path(work_dir).resolve())
    store = TriggerStore(ctx.layout.state / "trigger.json")
    try:
        with retrain_locks(ctx):
            if reason == "scheduled":
                store.mark_retrain()
            print(f"retrain ({reason}): harvest -> teacher labels -> train -> champion vs challenger")
            result = pipeline(profile=profile, work_dir=work_dir, overrides=overrides, challenge=True)
    except RetrainRunning as busy:
        decision = store.suppress(str(busy))
        print(decision.line())
        return {"started": False, "reason": decision.reason}
    return {"started": True, "reason": reason, **result}
