"""Prepare stage: ingest JSONL/CSV, NFKC + PII masking, validation, de-duplication, leak-free splits.

Usage:
    python -m components.data --profile demo --labelled data/raw/seed.jsonl \
        --unlabelled data/raw/pool.jsonl --test data/raw/test.jsonl --out-dir data/prepared

Input rows are ``{"input": str, "expected": {"category", "priority", "reply"?}}`` (the pool needs only
``input``); CSV files use the columns ``input,category,priority,reply``. A malformed row is never fatal:
it goes to ``rejects.jsonl`` with its file, line number and reason. Test inputs win every tie: a training
or pool row that equals a test row (after normalisation, digits folded) is dropped as a leak.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from components import pii
from components.config import PrepareConfig
from components.io import read_jsonl, write_jsonl, write_manifest
from components.tasks import ticket_triage as task


class PrepareResult(BaseModel):
    out_dir: Path
    counts: dict[str, int]
    rejected: dict[str, int]
    pii_masked: dict[str, int]


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
            for row in reader:
                line = reader.line_num
                if row.get("input") is None:
                    rows.append((line, None, "missing column 'input'"))
                    continue
                record: dict[str, Any] = {"input": row["input"]}
                if row.get("category"):
                    record["expected"] = {k: row[k] for k in ("category", "priority", "reply") if row.get(k)}
                rows.append((line, record, None))
            return rows
    return list(read_jsonl(path))


def near_dup_key(text: str) -> str:
    """Fold what varies between near-identical inquiries: digits, case, spaces and punctuation."""
    text = re.sub(r"\d+", "0", pii.normalize(text).lower())
    return re.sub(r"[\s\W_]+", "", text)


def _clean(
    record: dict[str, Any], cfg: PrepareConfig, labelled: bool, masked: Counter[str]
) -> tuple[dict | None, str | None]:
    text = record.get("input")
    if not isinstance(text, str):
        return None, "input missing or not a string"
    text = pii.mask(text, masked) if cfg.mask_pii else pii.normalize(text)
    text = text.strip()
    if not cfg.min_chars <= len(text) <= cfg.max_chars:
        return None, f"input length {len(text)} outside [{cfg.min_chars}, {cfg.max_chars}]"
    out: dict[str, Any] = {"input": text}
    if "id" in record:
        out["id"] = str(record["id"])
    if labelled:
        try:
            out["expected"] = task.Expected.model_validate(record.get("expected")).model_dump(exclude_none=True)
        except ValidationError as err:
            first = err.errors()[0]
            return None, f"expected.{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return out, None


def load_clean(path: Path, cfg: PrepareConfig, labelled: bool, rejects: list[dict], masked: Counter[str]) -> list[dict]:
    rows = []
    for line, record, error in _read_rows(path):
        if record is not None:
            record, error = _clean(record, cfg, labelled, masked)
        if error:
            rejects.append({"file": str(path), "line": line, "reason": error})
            continue
        record.setdefault("id", f"{path.stem}-{line}")
        rows.append(record)
    return rows


def run(
    cfg: PrepareConfig, *, labelled: Path, unlabelled: Path | None, test: Path, out_dir: Path, seed: int = 42
) -> PrepareResult:
    rejects: list[dict] = []
    masked: Counter[str] = Counter()
    test_rows = load_clean(test, cfg, True, rejects, masked)
    gold_rows = load_clean(labelled, cfg, True, rejects, masked)
    pool_rows = load_clean(unlabelled, cfg, False, rejects, masked) if unlabelled else []

    reasons: Counter[str] = Counter(r["reason"].split(":")[0] for r in rejects)
    seen: set[str] = set()

    def dedupe(rows: list[dict], name: str) -> list[dict]:
        kept = []
        for row in rows:
            key = near_dup_key(row["input"])
            if key in seen:
                reasons[f"duplicate_{name}"] += 1
                continue
            seen.add(key)
            kept.append(row)
        return kept

    test_rows = dedupe(test_rows, "test")  # test first: anything later that matches it is a leak
    gold_rows = dedupe(gold_rows, "labelled")
    pool_rows = dedupe(pool_rows, "unlabelled")

    rng = random.Random(seed)
    rng.shuffle(gold_rows)
    n_val = round(len(gold_rows) * cfg.val_fraction)
    splits = {"train": gold_rows[n_val:], "val": gold_rows[:n_val], "test": test_rows, "pool": pool_rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {name: write_jsonl(out_dir / f"{name}.jsonl", rows) for name, rows in splits.items()}
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    write_manifest(out_dir, stage="prepare", counts=counts, rejected=dict(reasons), pii_masked=dict(masked))
    return PrepareResult(out_dir=out_dir, counts=counts, rejected=dict(reasons), pii_masked=dict(masked))


def main() -> None:
    import argparse

    from components.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--labelled", type=Path, required=True)
    parser.add_argument("--unlabelled", type=Path)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    params = load_params(args.profile)
    result = run(
        params.prepare,
        labelled=args.labelled,
        unlabelled=args.unlabelled,
        test=args.test,
        out_dir=args.out_dir,
        seed=params.project.seed,
    )
    print(result.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
