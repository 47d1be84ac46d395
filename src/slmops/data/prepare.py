"""Prepare stage: read the user's JSONL/CSV/Parquet, NFKC + PII masking, validation, de-duplication, leak-free splits.

Usage:
    slmops stage prepare --profile demo       # reads params `data:` (see README "Bring your own data")

Each source maps the task spec's names to the file's columns (``data.<source>.columns``); unmapped names are
looked up as themselves, and JSONL rows may nest the labels under ``expected``. A malformed row is never
fatal and never silently dropped: it goes to ``rejects.jsonl`` with its file, line (CSV/JSONL) or row
(Parquet) and reason. Test inputs win every tie: a training or pool row equal to a test row (after
normalisation, digits folded) is dropped as a leak. Without a test source, a seeded ``test_fraction`` of the
de-duplicated labelled rows becomes the test set, so no test input has a twin in training either.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from slmops.text import pii
from slmops.text.dedup import near_dup_key
from slmops.config import PIIConfig, PrepareConfig, SourceConfig
from slmops.io import read_jsonl, write_jsonl, write_manifest
from slmops.tasks import Task

Row = tuple[int, dict[str, Any] | None, str | None]  # (line or row number, record, error)


class PrepareResult(BaseModel):
    out_dir: Path
    counts: dict[str, int]
    rejected: dict[str, int]
    pii_masked: dict[str, int]


def _format(src: SourceConfig) -> str:
    if src.format != "auto":
        return src.format
    suffix = Path(src.path).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "jsonl")


def _raw_rows(src: SourceConfig) -> Iterator[Row]:
    path, kind = Path(src.path), _format(src)
    if kind == "csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}, None
    elif kind == "parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        for number, row in enumerate(frame.to_dict(orient="records"), start=1):
            yield number, {k: _plain(v) for k, v in row.items() if not _missing(v)}, None
    else:
        yield from read_jsonl(path)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None or NaN


def _plain(value: Any) -> Any:
    """Parquet gives numpy arrays and scalars: plain Python values, as JSON would."""
    return value.tolist() if hasattr(value, "tolist") else value


def _typed(value: Any, kind: str) -> Any:
    """CSV cells are strings: turn them into the spec's type (labels as a JSON list or ``a|b|c``)."""
    if not isinstance(value, str):
        return value
    if kind == "labels":
        return json.loads(value) if value.startswith("[") else [v.strip() for v in re.split(r"[|;]", value) if v]
    if kind == "integer" and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if kind == "number" and re.fullmatch(r"-?\d+(\.\d*)?", value.strip()):
        return float(value)
    return value


def map_record(raw: dict[str, Any], src: SourceConfig, task: Task) -> dict[str, Any]:
    """A source row in the task's terms: ``{"input", "expected"?, "id"?}``."""
    col = src.columns.get
    nested = raw.get("expected") if isinstance(raw.get("expected"), dict) else {}
    record: dict[str, Any] = {"input": raw.get(col(task.spec.input_field, task.spec.input_field))}
    expected = {}
    for name, field in task.fields.items():
        value = raw.get(col(name, name), nested.get(name))
        if value is not None:
            expected[name] = _typed(value, field.type)
    if expected:
        record["expected"] = expected
    if col("id", "id") in raw:
        record["id"] = str(raw[col("id", "id")])
    return record


def _clean(
    record: dict[str, Any],
    cfg: PrepareConfig,
    task: Task,
    labelled: bool,
    masked: Counter[str],
    pii_cfg: PIIConfig | None = None,
) -> tuple[dict | None, str | None]:
    text = record.get("input")
    if not isinstance(text, str):
        return None, f"{task.spec.input_field}: missing or not a string"
    text = pii.normalize(text).strip()  # already masked by load_clean when cfg.mask_pii
    if not cfg.min_chars <= len(text) <= cfg.max_chars:
        return None, f"input length {len(text)} outside [{cfg.min_chars}, {cfg.max_chars}]"
    out: dict[str, Any] = {"input": text}
    if "id" in record:
        out["id"] = record["id"]
    if labelled:
        try:
            expected = task.validate_expected(record.get("expected") or {})
        except ValidationError as err:
            first = err.errors()[0]
            return None, f"expected.{'.'.join(map(str, first['loc']))}: {first['msg']}"
        for name in task.text_fields:  # a reference text (a reply, a summary) may quote personal data too
            if cfg.mask_pii and isinstance(expected.get(name), str):
                expected[name] = pii.mask(expected[name], masked, pii_cfg)
        out["expected"] = expected
    return out, None


def load_clean(
    src: SourceConfig | Path,
    cfg: PrepareConfig,
    task: Task,
    labelled: bool,
    rejects: list[dict],
    masked: Counter[str],
    pii_cfg: PIIConfig | None = None,
) -> list[dict]:
    """Valid rows of one source; every bad one is appended to ``rejects`` with its file, line and reason.

    With ``cfg.mask_pii`` the inputs are masked by ``pii_cfg`` (``params.pii``) in one batched pass."""
    src = src if isinstance(src, SourceConfig) else SourceConfig(path=str(src))
    rows = []
    read = [
        (line, map_record(raw, src, task) if raw is not None else None, error) for line, raw, error in _raw_rows(src)
    ]
    if cfg.mask_pii:  # one batched pass (nlp.pipe) instead of one masker call per row
        records = [r for _, r, _ in read if r is not None and isinstance(r.get("input"), str)]
        for record, text in zip(records, pii.mask_many([r["input"] for r in records], masked, pii_cfg), strict=True):
            record["input"] = text
    for line, mapped, error in read:
        record = None
        if mapped is not None:
            record, error = _clean(mapped, cfg, task, labelled, masked, pii_cfg)
        if error or record is None:
            rejects.append({"file": src.path, "line": line, "reason": error})
            continue
        record.setdefault("id", f"{Path(src.path).stem}-{line}")
        rows.append(record)
    return rows


class _Deduper:
    """Keeps the first row of each near-duplicate key across every split it sees, counting the rest."""

    def __init__(self, reasons: Counter[str]):
        self.seen: set[str] = set()
        self.reasons = reasons

    def __call__(self, rows: list[dict], name: str) -> list[dict]:
        kept = []
        for row in rows:
            key = near_dup_key(row["input"])
            if key in self.seen:
                self.reasons[f"duplicate_{name}"] += 1
                continue
            self.seen.add(key)
            kept.append(row)
        return kept


def run(
    cfg: PrepareConfig,
    *,
    task: Task,
    labelled: SourceConfig | Path,
    unlabelled: SourceConfig | Path | None,
    test: SourceConfig | Path | None,
    out_dir: Path,
    seed: int = 42,
    test_fraction: float = 0.15,
    pii_cfg: PIIConfig | None = None,
) -> PrepareResult:
    rejects: list[dict] = []
    masked: Counter[str] = Counter()
    test_rows = load_clean(test, cfg, task, True, rejects, masked, pii_cfg) if test else []
    gold_rows = load_clean(labelled, cfg, task, True, rejects, masked, pii_cfg)
    pool_rows = load_clean(unlabelled, cfg, task, False, rejects, masked, pii_cfg) if unlabelled else []
    reasons: Counter[str] = Counter(r["reason"].split(":")[0] for r in rejects)
    dedupe = _Deduper(reasons)
    rng = random.Random(seed)
    if test:
        test_rows = dedupe(test_rows, "test")  # test first: anything later that matches it is a leak
        gold_rows = dedupe(gold_rows, "labelled")
    else:  # split the test set off the de-duplicated labelled rows: no twin can straddle the split
        gold_rows = dedupe(gold_rows, "labelled")
        rng.shuffle(gold_rows)
        n_test = max(1, round(len(gold_rows) * test_fraction))
        test_rows, gold_rows = gold_rows[:n_test], gold_rows[n_test:]
    pool_rows = dedupe(pool_rows, "unlabelled")
    rng.shuffle(gold_rows)
    n_val = round(len(gold_rows) * cfg.val_fraction)
    splits = {"train": gold_rows[n_val:], "val": gold_rows[:n_val], "test": test_rows, "pool": pool_rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {name: write_jsonl(out_dir / f"{name}.jsonl", rows) for name, rows in splits.items()}
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    write_manifest(out_dir, stage="prepare", counts=counts, rejected=dict(reasons), pii_masked=dict(masked))
    return PrepareResult(out_dir=out_dir, counts=counts, rejected=dict(reasons), pii_masked=dict(masked))
