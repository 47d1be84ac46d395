"""Monitor stage: Evidently drift report of recent inference traffic against the training reference.

Usage:
    python -m components.monitor --profile demo --reference data/synthetic/train.jsonl \
        --log logs/inference.jsonl --out-dir reports/monitor

Text is summarised into columns a drift test can compare (length, share of ASCII letters, of digits, of
masked PII, plus the predicted category and priority and whether the answer was valid JSON). Drift is
declared when the share of drifted columns reaches ``monitor.drift_share``. Writes ``drift_report.html``
and ``drift.json``.
"""

from __future__ import annotations

import json
import re
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components.config import MonitorConfig
from components.io import load_jsonl, read_jsonl
from components.tasks import ticket_triage as task

NUMERIC = ["length", "ascii_ratio", "digit_ratio", "pii_masks"]
CATEGORICAL = ["category", "priority", "json_valid"]


class MonitorResult(BaseModel):
    drift_detected: bool
    drift_share: float
    drifted_columns: list[str]
    rows_reference: int
    rows_current: int
    report_html: Path | None
    reason: str | None = None  # why no report was made (too little traffic)


def features(text: str, output: str | None) -> dict[str, Any]:
    n = max(1, len(text))
    label = task.parse_output(output)[0] if output is not None else None
    return {
        "length": len(text),
        "ascii_ratio": sum(c.isascii() and c.isalpha() for c in text) / n,
        "digit_ratio": sum(c.isdigit() for c in text) / n,
        "pii_masks": len(re.findall(r"\[[A-Z]+\]", text)),
        "category": label.category if label else "invalid",
        "priority": label.priority if label else "invalid",
        "json_valid": "yes" if label else "no",
    }


def reference_frame(reference: Path):
    import pandas as pd

    rows = load_jsonl(reference)
    return pd.DataFrame([features(r["input"], task.format_output(r["expected"])) for r in rows])


def current_frame(log: Path, window: int):
    import pandas as pd

    recent: deque[dict] = deque(maxlen=window)
    if log.exists():
        for _, row, error in read_jsonl(log):
            # answered requests only (a 504 row holds a cut-off answer); rows older than ``status`` count
            if row is not None and error is None and "input" in row and row.get("status", 200) == 200:
                recent.append(row)
    return pd.DataFrame([features(r["input"], r.get("output")) for r in recent])


def run(cfg: MonitorConfig, *, reference: Path, log: Path, out_dir: Path) -> MonitorResult:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = reference_frame(reference), current_frame(log, cfg.window)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(cur) < cfg.min_rows:
        result = MonitorResult(
            drift_detected=False,
            drift_share=0.0,
            drifted_columns=[],
            rows_reference=len(ref),
            rows_current=len(cur),
            report_html=None,
            reason=f"only {len(cur)} logged requests; need monitor.min_rows={cfg.min_rows}",
        )
        (out_dir / "drift.json").write_text(result.model_dump_json(indent=2))
        return result
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    report = Report([DataDriftPreset(drift_share=cfg.drift_share)])
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition)
    )
    html = out_dir / "drift_report.html"
    snapshot.save_html(str(html))
    metrics = snapshot.dict()["metrics"]
    share = next(m["value"]["share"] for m in metrics if m["metric_name"].startswith("DriftedColumnsCount"))
    drifted = []
    for m in metrics:  # ValueDrift(column=...,method=...,threshold=t): value is a p-value or a distance
        found = re.match(r"ValueDrift\(column=(\w+),method=([^,]+),threshold=([\d.e-]+)\)", m["metric_name"])
        if found:
            column, method, threshold = found.group(1), found.group(2), float(found.group(3))
            value = float(m["value"])
            if (value < threshold) if "p_value" in method else (value >= threshold):
                drifted.append(column)
    result = MonitorResult(
        drift_detected=share >= cfg.drift_share,
        drift_share=share,
        drifted_columns=drifted,
        rows_reference=len(ref),
        rows_current=len(cur),
        report_html=html,
    )
    (out_dir / "drift.json").write_text(result.model_dump_json(indent=2))
    return result


def main() -> None:
    import argparse

    from components.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    result = run(load_params(args.profile).monitor, reference=args.reference, log=args.log, out_dir=args.out_dir)
    print(json.dumps(result.model_dump(mode="json")))


if __name__ == "__main__":
    main()
