"""Monitor stage: Evidently drift report of recent inference traffic against the training reference.

Usage:
    slmops monitor --profile demo

Text is summarised into columns a drift test can compare (length, share of ASCII letters, of digits, of
masked PII, plus the task's output features: every enum field's predicted value and whether the answer
was valid JSON). Drift is
declared when the share of drifted columns reaches ``monitor.drift_share``. Writes ``drift_report.html``
and ``drift.json``.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components.config import MonitorConfig
from components.io import load_jsonl, read_jsonl
from components.tasks import Task

NUMERIC = ["length", "ascii_ratio", "digit_ratio", "pii_masks"]


class MonitorResult(BaseModel):
    drift_detected: bool
    drift_share: float
    drifted_columns: list[str]
    rows_reference: int
    rows_current: int
    report_html: Path | None
    reason: str | None = None  # why no report was made (too little traffic)


def features(task: Task, text: str, output: str | None) -> dict[str, Any]:
    n = max(1, len(text))
    return {
        "length": len(text),
        "ascii_ratio": sum(c.isascii() and c.isalpha() for c in text) / n,
        "digit_ratio": sum(c.isdigit() for c in text) / n,
        "pii_masks": len(re.findall(r"\[[A-Z_]+\]", text)),
        **task.output_features(output),
    }


def reference_frame(task: Task, reference: Path):
    import pandas as pd

    rows = [r for r in load_jsonl(reference) if set(task.fields) <= set(r["expected"])]
    return pd.DataFrame([features(task, r["input"], task.format_output(r["expected"])) for r in rows])


def current_frame(task: Task, log: Path, window: int):
    import pandas as pd

    recent: deque[dict] = deque(maxlen=window)
    if log.exists():
        for _, row, error in read_jsonl(log):
            # answered requests only (a 504 row holds a cut-off answer); rows older than ``status`` count
            if row is not None and error is None and "input" in row and row.get("status", 200) == 200:
                recent.append(row)
    return pd.DataFrame([features(task, r["input"], r.get("output")) for r in recent])


def run(cfg: MonitorConfig, *, task: Task, reference: Path, log: Path, out_dir: Path) -> MonitorResult:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = reference_frame(task, reference), current_frame(task, log, cfg.window)
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
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=task.feature_columns)
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
