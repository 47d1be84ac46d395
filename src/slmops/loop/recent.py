"""The recent-traffic eval set: the newest labelled harvest, held out by time and never trained on.

Usage:
    from slmops.loop.recent import load_rows, split_recent
    rows = load_rows(sorted(Path("data/traffic_labelled").glob("batch-*.jsonl")))
    split = split_recent(rows, params.loop, near_dup_threshold=params.harvest.near_dup_threshold)
    split.train     # older labelled traffic: goes into training with gold + pool
    split.recent    # the newest rows: evaluated side by side with the gold test set, for both models

A row is any dict with ``id``, ``input``, ``expected`` (the teacher's label) and its time as ``traffic.ts`` (a
labelled harvest row), ``provenance.ts`` (what ``src/slmops/loop/harvest.py`` writes) or ``ts``. Rows without a label
(the teacher's answer was rejected) are in neither part. The newest ``loop.recent_eval_rows`` rows, else the newest
``loop.recent_eval_fraction`` of them, are the eval set; a training row that is a near-duplicate of one of them is
dropped, so nothing the eval set asks was trained on. The split is recomputed from all batches each round: a row
held out this round may be trained on in a later round, once newer traffic has replaced it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import LoopConfig
from slmops.io import load_jsonl
from slmops.text.dedup import NearDupIndex


class TrafficSplit(BaseModel):
    train: list[dict[str, Any]]
    recent: list[dict[str, Any]]
    cutoff_ts: str | None  # the oldest held-out row's time
    unlabelled: int  # rows without a label, in neither part
    dropped_near_recent: int  # training rows dropped as near-duplicates of a held-out row


def row_ts(row: dict[str, Any]) -> str:
    ts = (row.get("traffic") or {}).get("ts") or (row.get("provenance") or {}).get("ts") or row.get("ts")
    if not ts:
        raise ValueError(f"row {row.get('id')!r} has no time (provenance.ts or ts): it cannot be split by time")
    return str(ts)


def load_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every row of the given batch files, in file order."""
    return [row for path in paths for row in load_jsonl(path)]


def split_recent(rows: Sequence[dict[str, Any]], cfg: LoopConfig, near_dup_threshold: float = 0.8) -> TrafficSplit:
    """``(older rows to train on, newest rows to evaluate on)`` by time (ties broken by id)."""
    labelled = [r for r in rows if r.get("expected")]
    ordered = sorted(labelled, key=lambda r: (row_ts(r), str(r.get("id", ""))))
    wanted = cfg.recent_eval_rows or math.ceil(len(ordered) * cfg.recent_eval_fraction)
    n_recent = min(wanted, len(ordered))
    older, recent = ordered[: len(ordered) - n_recent], ordered[len(ordered) - n_recent :]
    index = NearDupIndex(near_dup_threshold)
    for row in recent:
        index.add(row["input"])
    train = [r for r in older if index.find(r["input"]) is None]
    return TrafficSplit(
        train=train,
        recent=recent,
        cutoff_ts=row_ts(recent[0]) if recent else None,
        unlabelled=len(rows) - len(labelled),
        dropped_near_recent=len(older) - len(train),
    )
