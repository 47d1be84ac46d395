"""Harvest stage: answered production traffic becomes an append-only set of training candidates.

Usage:
    from slmops.loop.harvest import run
    result = run(params.harvest, task=task, log=Path("logs/inference.jsonl"), out_dir=Path("data/traffic"),
                 train=[Path("data/synthetic/train.jsonl")], eval_sets=[Path("data/prepared/test.jsonl")])
    print(result.by_reason)   # {"teacher_fallback": 12, "low_confidence": 40, "traffic_sample": 448}

Reads the inference log past a durable watermark (``src/slmops/loop/logtail.py``: survives rotation), keeps
answered rows (status 200), flags what the model is weakest on (teacher fallbacks, invalid output, low
confidence, inputs far from every training input, predicted labels the monitor saw drift), puts those first,
drops exact and near-duplicates (among the rows, of training rows, of any test/eval input, of rows harvested
before) and caps the batch. The batch is written as ``batch-<n>.jsonl`` (fsync'ed, renamed into place), and
only then the state (``harvest_state.json``: watermark + committed batches) is replaced. A batch file the
state does not list is what a killed run left behind: it is removed and its rows are read again from the old
watermark, so no row is lost or taken twice. A row with personal data still in it stops the harvest before
anything is written (the server masks inputs; a leak means a recognizer is missing).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import HarvestConfig, PIIConfig
from slmops.io import load_jsonl, sha256_text
from slmops.loop.logtail import LogRow, Watermark, read_new
from slmops.tasks import Task
from slmops.text import pii
from slmops.text.dedup import NearDupIndex, signature

STATE = "harvest_state.json"
WEIGHTS = {"teacher_fallback": 8, "invalid_output": 4, "low_confidence": 2, "drifted_region": 1, "drifted_label": 1}


class TrafficProvenance(BaseModel):
    log_id: str
    ts: str
    model: str | None = None
    model_version: str | None = None  # the version that answered
    served_by: str | None = None
    fallback: str | None = None
    confidence: float | None = None  # least certain token's probability, when the log has it
    served_output: str | None = None  # the answer sent (PII-masked like the input)
    why: list[str]  # why it was selected, most important first
    novelty: float  # 1 - cosine similarity to the nearest training input
    batch: int
    log_file: str


class TrafficRow(BaseModel):
    id: str
    input: str
    provenance: TrafficProvenance


class BatchInfo(BaseModel):
    index: int
    file: str
    rows: int
    sha256: str
    by_reason: dict[str, int]
    created_at: str


class HarvestState(BaseModel):
    watermark: Watermark = Watermark()
    batches: list[BatchInfo] = []


class HarvestResult(BaseModel):
    batch: Path | None  # None: nothing new worth keeping
    batch_index: int | None
    rows_read: int  # log rows past the watermark
    selected: int
    by_reason: dict[str, int]  # selected rows by their main reason
    flagged: dict[str, int]  # every flag among the answered rows (a row may carry several)
    dropped: dict[str, int]  # rows not taken, by reason
    batches_total: int
    rows_total: int


class PiiLeft(ValueError):
    """A row still holds personal data after the server's masking; nothing was written."""


def load_state(path: Path) -> HarvestState:
    return HarvestState.model_validate_json(path.read_text(encoding="utf-8")) if path.exists() else HarvestState()


def _write_durable(path: Path, text: str) -> None:
    """Temp file, fsync, rename, fsync the folder: after this returns the file survives a crash whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _recover(out_dir: Path, state: HarvestState) -> None:
    """Remove what a killed run left: temp files and batch files the state never committed."""
    committed = {b.file for b in state.batches}
    for path in out_dir.glob("batch-*.jsonl"):
        if path.name not in committed:
            path.unlink()
    for path in out_dir.glob(".batch-*.jsonl.*"):
        path.unlink()
    for path in out_dir.glob(f".{STATE}.*"):
        path.unlink()


def _answered(rows: list[LogRow], cfg: HarvestConfig, dropped: Counter[str]) -> list[LogRow]:
    kept = []
    for row in rows:
        record = row.record
        if record.get("status", 200) != 200:
            dropped["not_answered"] += 1
        elif not isinstance(record.get("input"), str) or "id" not in record:
            dropped["no_input"] += 1
        elif len(record["input"].strip()) < cfg.min_chars:
            dropped["too_short"] += 1
        else:
            kept.append(row)
    return kept


def _confidence(record: dict[str, Any]) -> float | None:
    value = record.get("min_token_prob", record.get("confidence"))
    return float(value) if isinstance(value, int | float) else None


def _flags(record: dict, task: Task, cfg: HarvestConfig, novelty: float, drifted: dict[str, list[str]]) -> list[str]:
    why = []
    if record.get("served_by") == "teacher" or record.get("fallback"):
        why.append("teacher_fallback")
    label = task.parse_output(record.get("output"))[0]
    if label is None:
        why.append("invalid_output")
    confidence = _confidence(record)
    if confidence is not None and confidence < cfg.low_confidence:
        why.append("low_confidence")
    if 1.0 - novelty < cfg.novelty_similarity:
        why.append("drifted_region")
    values = label.model_dump() if label is not None else {}
    if any(values.get(field) in wanted for field, wanted in drifted.items()):
        why.append("drifted_label")
    return why or ["traffic_sample"]


def _index(texts: Sequence[str], threshold: float) -> NearDupIndex:
    index = NearDupIndex(threshold)
    for text in texts:
        index.add(text)
    return index


def _priority(item: tuple[LogRow, list[str], float]) -> tuple[float, float, float]:
    row, why, novelty = item
    confidence = _confidence(row.record)
    return -sum(WEIGHTS.get(w, 0) for w in why), 1.0 if confidence is None else confidence, -novelty


def _select(
    rows: list[tuple[LogRow, list[str], float]],
    cfg: HarvestConfig,
    against: dict[str, NearDupIndex],
    dropped: Counter[str],
) -> list[tuple[LogRow, list[str], float]]:
    """Most useful first (stable: log order among equals), then de-duplicated (the first of near-twins
    stays), then capped."""
    batch = NearDupIndex(cfg.near_dup_threshold)
    kept = []
    for row, why, novelty in sorted(rows, key=_priority):
        if why == ["traffic_sample"] and not cfg.include_unflagged:
            dropped["unflagged"] += 1
            continue
        text = row.record["input"]
        sig = signature(text)
        clash = next((name for name, index in against.items() if index.find(text, sig) is not None), None)
        if clash is None and batch.find(text, sig) is not None:
            clash = "duplicate"
        if clash is not None:
            dropped[clash] += 1
            continue
        batch.add(text, sig)
        kept.append((row, why, novelty))
    dropped["over_cap"] += max(0, len(kept) - cfg.max_rows_per_batch)
    return kept[: cfg.max_rows_per_batch]


def _traffic_row(row: LogRow, why: list[str], novelty: float, batch: int) -> TrafficRow:
    r = row.record
    provenance = TrafficProvenance(
        log_id=str(r["id"]),
        ts=str(r.get("ts", "")),
        model=r.get("model"),
        model_version=None if r.get("model_version") is None else str(r["model_version"]),
        served_by=r.get("served_by"),
        fallback=r.get("fallback"),
        confidence=_confidence(r),
        served_output=r.get("output"),
        why=why,
        novelty=round(novelty, 4),
        batch=batch,
        log_file=row.file,
    )
    return TrafficRow(id=f"traffic-{r['id']}", input=r["input"], provenance=provenance)


def _check_pii(rows: list[TrafficRow], pii_cfg: PIIConfig | None = None) -> None:
    """Refuse the batch if any row still holds personal data (``params.pii``'s masker, one batched pass); the
    message names rows and kinds, not values."""
    if not rows:
        return
    texts = [t for row in rows for t in (row.input, row.provenance.served_output or "")]
    found = pii.analyze_many(texts, pii_cfg)
    leaks = []
    for row, pair in zip(rows, zip(found[::2], found[1::2], strict=True), strict=True):
        if labels := sorted({f.label for f in pair[0] + pair[1]}):
            leaks.append(f"{row.provenance.log_id} ({', '.join(labels)})")
    if leaks:
        raise PiiLeft(f"{len(leaks)} row(s) still hold personal data, nothing written: {'; '.join(leaks[:10])}")


def harvested_inputs(out_dir: Path, state: HarvestState | None = None) -> list[str]:
    state = state or load_state(out_dir / STATE)
    return [r["input"] for b in state.batches for r in load_jsonl(out_dir / b.file)]


def _texts(paths: Sequence[Path]) -> list[str]:
    return [r["input"] for p in paths if p.exists() for r in load_jsonl(p) if isinstance(r.get("input"), str)]


def run(
    cfg: HarvestConfig,
    *,
    task: Task,
    log: Path,
    out_dir: Path,
    train: Sequence[Path],
    eval_sets: Sequence[Path],
    drifted_values: dict[str, list[str]] | None = None,
    pii_cfg: PIIConfig | None = None,
) -> HarvestResult:
    """Harvest the log's new answered rows into ``out_dir/batch-<n>.jsonl`` (see the module docstring).

    ``pii_cfg`` is ``params.pii``: the masker that re-scans every row before the batch is written."""
    from slmops.text.similarity import nearest_similarity

    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(out_dir / STATE)
    _recover(out_dir, state)
    new = read_new(log, state.watermark)
    dropped: Counter[str] = Counter({"malformed": new.malformed} if new.malformed else {})
    rows = _answered(new.rows, cfg, dropped)
    train_texts = _texts(train)
    novelty = 1.0 - nearest_similarity(train_texts, [r.record["input"] for r in rows])
    flagged = [
        (r, _flags(r.record, task, cfg, n, drifted_values or {}), float(n)) for r, n in zip(rows, novelty, strict=True)
    ]
    against = {
        "in_eval": _index(_texts(eval_sets), cfg.near_dup_threshold),
        "in_training": _index(train_texts, cfg.near_dup_threshold),
        "already_harvested": _index(harvested_inputs(out_dir, state), cfg.near_dup_threshold),
    }
    selected = _select(flagged, cfg, against, dropped)
    index = len(state.batches) + 1
    batch_rows = [_traffic_row(r, why, n, index) for r, why, n in selected]
    _check_pii(batch_rows, pii_cfg)
    by_reason = dict(Counter(row.provenance.why[0] for row in batch_rows))
    path = None
    if batch_rows:
        path = out_dir / f"batch-{index:05d}.jsonl"
        text = "".join(row.model_dump_json() + "\n" for row in batch_rows)
        _write_durable(path, text)
        info = BatchInfo(
            index=index,
            file=path.name,
            rows=len(batch_rows),
            sha256=sha256_text(text),
            by_reason=by_reason,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        state = state.model_copy(update={"batches": [*state.batches, info]})
    state = state.model_copy(update={"watermark": new.watermark})
    _write_durable(out_dir / STATE, state.model_dump_json(indent=2))
    return HarvestResult(
        batch=path,
        batch_index=index if path else None,
        rows_read=len(new.rows) + new.malformed,
        selected=len(batch_rows),
        by_reason=by_reason,
        flagged=dict(Counter(w for _, why, _ in flagged for w in why)),
        dropped={k: v for k, v in dropped.items() if v},
        batches_total=len(state.batches),
        rows_total=sum(b.rows for b in state.batches),
    )


def pending_rows(log: Path, out_dir: Path, min_chars: int = 5) -> int:
    """Answered rows logged past the watermark (what the next harvest would consider); reads, changes nothing."""
    new = read_new(log, load_state(out_dir / STATE).watermark)
    return len(_answered(new.rows, HarvestConfig(min_chars=min_chars), Counter()))
