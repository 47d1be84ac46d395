"""When drift starts a retrain: drift in K consecutive windows, outside a cooldown, with enough new rows;
and a lock so that only one retrain runs at a time on a work dir.

Usage:
    from slmops.loop.trigger import TriggerStore, retrain_lock, RetrainRunning
    store = TriggerStore(layout.state / "trigger.json")      # state + trigger.jsonl (every decision)
    try:
        with retrain_lock(layout.state / "retrain.lock"):
            decision = store.observe(params.loop.trigger, drift=True, window_id="chatcmpl-…", new_rows=240)
            if decision.start:
                ...  # harvest, label, retrain, compare, promote: still holding the lock
    except RetrainRunning as busy:
        decision = store.suppress(str(busy))                 # recorded like any other decision

``decide`` is the pure policy. A window is identified by its last log row: a monitor run over the same
window as before (no new traffic) counts nothing, so one burst of drift cannot fire on every scheduled run.
A retrain that starts resets the count, so the next one needs K fresh drifted windows too. A scheduled
retrain calls ``store.mark_retrain()`` so the cooldown covers it as well.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from slmops.config import TriggerConfig
from slmops.io import atomic_write_text


class TriggerState(BaseModel):
    consecutive: int = 0  # drifted windows in a row, up to the last one seen
    last_window_id: str | None = None
    last_retrain_at: datetime | None = None


class TriggerDecision(BaseModel):
    start: bool
    reason: str  # "started: …" or why it was suppressed
    at: datetime
    drift: bool | None = None
    window_id: str | None = None
    consecutive: int = 0
    new_rows: int | None = None
    cooldown_left_s: float | None = None

    def line(self) -> str:
        """The one line a flow prints for this decision."""
        return f"retrain {'STARTED' if self.start else 'suppressed'}: {self.reason}"


def decide(
    state: TriggerState, cfg: TriggerConfig, *, drift: bool, window_id: str | None, new_rows: int, now: datetime
) -> tuple[TriggerDecision, TriggerState]:
    """The policy: ``(decision, next state)``; nothing is read or written."""
    seen = dict(drift=drift, window_id=window_id, new_rows=new_rows, at=now)
    if window_id is not None and window_id == state.last_window_id:
        reason = "window already counted: no new traffic since the last check"
        return TriggerDecision(start=False, reason=reason, consecutive=state.consecutive, **seen), state
    consecutive = state.consecutive + 1 if drift else 0
    nxt = state.model_copy(update={"consecutive": consecutive, "last_window_id": window_id})
    left = None
    if state.last_retrain_at is not None:
        left = (state.last_retrain_at + timedelta(hours=cfg.cooldown_hours) - now).total_seconds()
        left = left if left > 0 else None
    k = cfg.consecutive_windows
    if not drift:
        reason = "no drift in this window"
    elif consecutive < k:
        reason = f"drift in {consecutive} consecutive window(s); need {k}"
    elif left is not None:
        since = f"{state.last_retrain_at:%Y-%m-%d %H:%M} UTC"
        reason = f"in cooldown: the last retrain started at {since}, {left / 3600:.1f} h left"
    elif new_rows < cfg.min_new_rows:
        reason = f"only {new_rows} new harvestable rows; need {cfg.min_new_rows}"
    else:
        started = TriggerDecision(
            start=True, reason=f"started: drift in {consecutive} consecutive windows", consecutive=consecutive, **seen
        )
        return started, nxt.model_copy(update={"consecutive": 0, "last_retrain_at": now})
    return TriggerDecision(start=False, reason=reason, consecutive=consecutive, cooldown_left_s=left, **seen), nxt


class TriggerStore:
    """The policy's state in a JSON file (replaced atomically) and every decision appended to a JSONL file."""

    def __init__(self, path: Path):
        self.path, self.history = path, path.with_suffix(".jsonl")

    def load(self) -> TriggerState:
        if not self.path.exists():
            return TriggerState()
        return TriggerState.model_validate_json(self.path.read_text(encoding="utf-8"))

    def _save(self, state: TriggerState, decision: TriggerDecision) -> TriggerDecision:
        atomic_write_text(self.path, state.model_dump_json(indent=2))
        with open(self.history, "a", encoding="utf-8") as fh:
            fh.write(decision.model_dump_json() + "\n")
        return decision

    def observe(
        self, cfg: TriggerConfig, *, drift: bool, window_id: str | None, new_rows: int, now: datetime | None = None
    ) -> TriggerDecision:
        """Decide on one monitored window, persist the new state and record the decision."""
        decision, state = decide(
            self.load(), cfg, drift=drift, window_id=window_id, new_rows=new_rows, now=now or datetime.now(UTC)
        )
        return self._save(state, decision)

    def suppress(self, reason: str, now: datetime | None = None) -> TriggerDecision:
        """Record a decision taken outside the policy (e.g. another retrain holds the lock)."""
        return self._save(self.load(), TriggerDecision(start=False, reason=reason, at=now or datetime.now(UTC)))

    def mark_retrain(self, now: datetime | None = None, reason: str = "started: scheduled") -> TriggerDecision:
        """A retrain that did not come from ``observe`` (a schedule, a person): the cooldown starts now."""
        now = now or datetime.now(UTC)
        state = self.load().model_copy(update={"consecutive": 0, "last_retrain_at": now})
        return self._save(state, TriggerDecision(start=True, reason=reason, at=now))


class RetrainRunning(RuntimeError):
    """Another process holds the retrain lock of this work dir."""


@contextmanager
def retrain_lock(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` while a retrain runs. Without ``wait``, a held lock raises
    ``RetrainRunning`` naming the holder (its pid and since when) instead of queueing a second retrain."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown holder"
            raise RetrainRunning(f"another retrain is running on this work dir ({holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": datetime.now(UTC).isoformat()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
