"""Retrain trigger: K consecutive drifted windows, cooldown, enough new rows, one window counted once, one
retrain at a time."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from slmops.config import TriggerConfig
from slmops.loop.trigger import RetrainRunning, TriggerStore, retrain_lock
from tests.conftest import REPO

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CFG = TriggerConfig(consecutive_windows=3, cooldown_hours=24, min_new_rows=100)


def _windows(store, drifts, start=0, new_rows=500, t=T0):
    return [
        store.observe(CFG, drift=d, window_id=f"w{start + i}", new_rows=new_rows, now=t + timedelta(hours=start + i))
        for i, d in enumerate(drifts)
    ]


def test_retrain_starts_only_after_k_consecutive_drifted_windows(tmp_path):
    store = TriggerStore(tmp_path / "trigger.json")
    decisions = _windows(store, [True, True, False, True, True, True])
    assert [d.start for d in decisions] == [False, False, False, False, False, True]
    assert decisions[1].reason == "drift in 2 consecutive window(s); need 3"
    assert decisions[2].reason == "no drift in this window" and decisions[2].consecutive == 0
    assert decisions[5].reason.startswith("started") and decisions[5].line().startswith("retrain STARTED")
    # every decision was recorded, in order
    assert len(store.history.read_text().splitlines()) == 6


def test_the_same_window_seen_twice_counts_once(tmp_path):
    store = TriggerStore(tmp_path / "trigger.json")
    for hour in range(5):  # a scheduled monitor rerunning on an unchanged log
        decision = store.observe(CFG, drift=True, window_id="w-same", new_rows=500, now=T0 + timedelta(hours=hour))
    assert not decision.start and "already counted" in decision.reason
    assert store.load().consecutive == 1


def test_a_second_trigger_inside_the_cooldown_is_suppressed_and_fires_after_it(tmp_path):
    store = TriggerStore(tmp_path / "trigger.json")
    assert _windows(store, [True] * 3)[-1].start  # started at hour 2
    later = _windows(store, [True] * 3, start=3)  # 3 more drifted windows, hours 3-5: inside 24 h
    assert not any(d.start for d in later)
    assert "in cooldown" in later[-1].reason and later[-1].cooldown_left_s == pytest.approx(21 * 3600)
    inside = store.observe(CFG, drift=True, window_id="w25", new_rows=500, now=T0 + timedelta(hours=25, minutes=59))
    assert not inside.start and "0.0 h left" in inside.reason
    after = store.observe(CFG, drift=True, window_id="w26", new_rows=500, now=T0 + timedelta(hours=26))
    assert after.start, after.reason  # drift persisted through the cooldown: the first window after it fires


def test_too_few_new_rows_suppress_and_a_scheduled_retrain_starts_the_cooldown(tmp_path):
    store = TriggerStore(tmp_path / "trigger.json")
    decisions = _windows(store, [True] * 3, new_rows=40)
    assert decisions[-1].reason == "only 40 new harvestable rows; need 100"
    store.mark_retrain(now=T0 + timedelta(hours=3))
    decisions = _windows(store, [True] * 3, start=4)
    assert "in cooldown" in decisions[-1].reason


def test_the_lock_blocks_a_second_holder_in_this_and_another_process(tmp_path):
    lock = tmp_path / "retrain.lock"
    with retrain_lock(lock):
        with pytest.raises(RetrainRunning, match=r"another retrain is running.*\"pid\""), retrain_lock(lock):
            pass
        code = (
            "import sys; from pathlib import Path; from slmops.loop.trigger import retrain_lock, RetrainRunning\n"
            "try:\n    with retrain_lock(Path(sys.argv[1])): print('acquired')\n"
            "except RetrainRunning as e: print('busy', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(lock)], cwd=REPO, capture_output=True, text=True)
        assert out.stdout.startswith("busy"), out
    with retrain_lock(lock):  # released: the next retrain may run
        pass


def test_a_waiting_holder_gets_the_lock_when_the_first_releases(tmp_path):
    lock = tmp_path / "retrain.lock"
    code = (
        "import sys, time; from pathlib import Path; from slmops.loop.trigger import retrain_lock\n"
        "with retrain_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RetrainRunning):
        with retrain_lock(lock):
            pass
    holder.stdin.write("\n")
    holder.stdin.flush()
    start = time.monotonic()
    with retrain_lock(lock, wait=True):
        assert holder.wait(timeout=30) == 0
    assert time.monotonic() - start < 30
