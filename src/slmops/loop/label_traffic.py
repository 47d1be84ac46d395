"""Label traffic stage: the teacher labels the harvested traffic; the newest labelled rows become the
recent-traffic eval set, the older ones training rows.

Usage:
    slmops stage label_traffic --profile demo

Every row of every committed harvest batch (``data/traffic/``, see ``src/slmops/loop/harvest.py``) is masked again
and sent to the synthesize stage's teacher through the same client: the same response cache (only prompts
it never answered cost a call), the same validation (a rejected answer is counted by reason, written to
``rejects.jsonl`` and never trained on), the same usage and cost accounting. Accepted rows keep the harvest's
provenance (log row, time, answering version, why it was selected) beside the teacher's. Then
``src/slmops/loop/recent.py`` splits them by time: ``recent.jsonl`` (the newest, evaluated beside the gold test
set and never trained on) and ``train.jsonl`` (the rest, which the synthesize stage adds to the training set).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from slmops.config import LoopConfig, PIIConfig, SynthesizeConfig
from slmops.io import load_jsonl, write_jsonl, write_manifest
from slmops.loop.harvest import STATE, load_state
from slmops.loop.recent import split_recent
from slmops.synthesize.stage import PIILeak
from slmops.tasks import Task
from slmops.teacher import open_teacher
from slmops.teacher.cache import ResponseCache
from slmops.teacher.labeller import Labeller, StageProgress
from slmops.text import pii


class TrafficResult(BaseModel):
    harvested: int  # rows in the committed harvest batches
    labelled: int
    rejected: dict[str, int]
    train_rows: int
    recent_rows: int
    dropped_near_recent: int
    recent_cutoff_ts: str | None
    teacher_calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    # What this execution spent (a rerun from the teacher cache spends nothing): not in the output's manifest.
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("teacher_calls", "cache_hits", "prompt_tokens", "completion_tokens")


def harvested_rows(traffic_dir: Path) -> list[dict]:
    """Every row of the batches the harvest state committed (a batch file it does not list is ignored)."""
    state = load_state(traffic_dir / STATE)
    return [row for b in state.batches for row in load_jsonl(traffic_dir / b.file)]


def label(
    cfg: SynthesizeConfig, task: Task, rows: list[dict], cache_path: Path, pii_cfg: PIIConfig | None = None
) -> tuple[list[dict], Labeller]:
    """Teacher labels for harvested rows, masked by ``pii_cfg`` (``params.pii``) before they are sent; returns the
    accepted training-format rows and the labeller (counts)."""
    inputs = pii.mask_many([r["input"] for r in rows], cfg=pii_cfg)
    progress = StageProgress(len(inputs), desc="label traffic")
    cache = ResponseCache(cache_path)
    try:
        with open_teacher(cfg.teacher) as teacher:
            labeller = Labeller(cfg, task, teacher, cache, progress, pii_cfg)
            labels = labeller.label(inputs)
    finally:
        progress.close()
        cache.close()
    accepted = labeller.accepted_rows(
        [(r["id"], text, *lab) for r, text, lab in zip(rows, inputs, labels, strict=True)], "traffic", cfg.sampling
    )
    by_id = {r["id"]: r for r in rows}
    return [a | {"traffic": by_id[a["id"]]["provenance"]} for a in accepted], labeller


def run(
    cfg: SynthesizeConfig,
    loop: LoopConfig,
    *,
    task: Task,
    traffic_dir: Path,
    out_dir: Path,
    cache_path: Path,
    near_dup_threshold: float,
    pii_cfg: PIIConfig | None = None,
) -> TrafficResult:
    rows = harvested_rows(traffic_dir)
    labelled, labeller = label(cfg, task, rows, cache_path, pii_cfg) if rows else ([], None)
    leaks = [r["id"] for r in labelled if pii.find_pii(r["input"], pii_cfg)]
    if leaks:  # masked just above; checked because the cost of a leak is high
        raise PIILeak(f"unmasked PII in {len(leaks)} traffic rows, e.g. {leaks[:5]}; nothing was written")
    split = split_recent(labelled, loop, near_dup_threshold=near_dup_threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "train.jsonl", split.train)
    write_jsonl(out_dir / "recent.jsonl", split.recent)
    write_jsonl(out_dir / "rejects.jsonl", labeller.rejects if labeller else [])
    usage = labeller.usage if labeller else Counter()
    result = TrafficResult(
        harvested=len(rows),
        labelled=len(labelled),
        rejected=dict(labeller.rejected) if labeller else {},
        train_rows=len(split.train),
        recent_rows=len(split.recent),
        dropped_near_recent=split.dropped_near_recent,
        recent_cutoff_ts=split.cutoff_ts,
        teacher_calls=usage["calls"],
        cache_hits=labeller.cache_hits if labeller else 0,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    write_manifest(out_dir, stage="label_traffic", **result.model_dump(mode="json", exclude=set(result.RUN_FIELDS)))
    return result
