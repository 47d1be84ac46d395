"""Monitor stage: does recent inference traffic still look like what the model was trained on?

Usage:
    slmops monitor --profile demo

The window is the last ``monitor.window`` answered rows of the inference log (status 200). Signals
(``src/slmops/loop/drift.py``): semantic drift of the inputs, the predicted-label distribution of every enum
field, and the fallback, invalid-output and low-confidence rates. Besides, an Evidently report compares
tabular columns (length, share of ASCII letters, of digits, of masked PII, every enum answer, JSON
validity) and counts the share of drifted columns. A window drifts when any signal drifts or that share
reaches ``monitor.drift_share``. Each window is identified by its last row's id (``window_end_id``), so a
retrain trigger can count a window once (``src/slmops/loop/trigger.py``). Writes ``drift.json`` and
``drift_report.html``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import MonitorConfig
from slmops.io import load_jsonl, read_jsonl
from slmops.loop.drift import Signal, label_signals, predicted, rate_signals, semantic_signal
from slmops.tasks import Task

NUMERIC = ["length", "ascii_ratio", "digit_ratio", "pii_masks"]


class MonitorResult(BaseModel):
    drift_detected: bool
    drift_share: float  # share of drifted tabular columns (Evidently)
    drifted_columns: list[str]  # drifted tabular columns and drifted signals
    signals: list[Signal] = []
    rows_reference: int
    rows_current: int
    window_end_id: str | None = None  # the window's last log row: the trigger counts a window once
    window_start_ts: str | None = None
    window_end_ts: str | None = None
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


def reference_rows(task: Task, reference: Path) -> list[dict[str, Any]]:
    """Training rows with every field labelled (their labels stand in for the answers)."""
    return [r for r in load_jsonl(reference) if set(task.fields) <= set(r.get("expected") or {})]


def recent_rows(log: Path, window: int) -> list[dict[str, Any]]:
    """The last ``window`` answered rows (a 504 row holds a cut-off answer; rows older than ``status`` count)."""
    recent: deque[dict] = deque(maxlen=window)
    if log.exists():
        for _, row, error in read_jsonl(log):
            if row is not None and error is None and "input" in row and row.get("status", 200) == 200:
                recent.append(row)
    return list(recent)


def tabular_drift(
    task: Task, ref: Sequence[dict], cur: Sequence[dict], cfg: MonitorConfig, html: Path | None
) -> tuple[float, list[str]]:
    """Evidently's data-drift preset over the tabular columns: (share of drifted columns, their names)."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref_frame = pd.DataFrame([features(task, r["input"], task.format_output(r["expected"])) for r in ref])
    cur_frame = pd.DataFrame([features(task, r["input"], r.get("output")) for r in cur])
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=task.feature_columns)
    snapshot = Report([DataDriftPreset(drift_share=cfg.drift_share)]).run(
        Dataset.from_pandas(cur_frame, data_definition=definition),
        Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    if html is not None:
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
    return float(share), drifted


def assess(
    cfg: MonitorConfig, *, task: Task, reference: Sequence[dict], current: Sequence[dict], html: Path | None = None
) -> MonitorResult:
    """Every signal on one window of log rows against the reference rows (in memory; ``html``: the report)."""
    answers = predicted(task, current)
    signals = []
    if cfg.semantic:
        signals.append(semantic_signal([r["input"] for r in reference], [r["input"] for r in current], cfg))
    signals += label_signals(task, reference, answers, cfg) + rate_signals(current, answers, cfg)
    share, columns = tabular_drift(task, reference, current, cfg, html)
    return MonitorResult(
        drift_detected=share >= cfg.drift_share or any(s.drifted for s in signals),
        drift_share=share,
        drifted_columns=columns + [s.name for s in signals if s.drifted],
        signals=signals,
        rows_reference=len(reference),
        rows_current=len(current),
        window_end_id=str(current[-1].get("id")) if current and current[-1].get("id") else None,
        window_start_ts=current[0].get("ts") if current else None,
        window_end_ts=current[-1].get("ts") if current else None,
        report_html=html,
    )


def run(cfg: MonitorConfig, *, task: Task, reference: Path, log: Path, out_dir: Path) -> MonitorResult:
    ref, cur = reference_rows(task, reference), recent_rows(log, cfg.window)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(cur) < cfg.min_rows:
        result = MonitorResult(
            drift_detected=False,
            drift_share=0.0,
            drifted_columns=[],
            rows_reference=len(ref),
            rows_current=len(cur),
            window_end_id=str(cur[-1].get("id")) if cur and cur[-1].get("id") else None,
            report_html=None,
            reason=f"only {len(cur)} logged requests; need monitor.min_rows={cfg.min_rows}",
        )
    else:
        result = assess(cfg, task=task, reference=ref, current=cur, html=out_dir / "drift_report.html")
    (out_dir / "drift.json").write_text(result.model_dump_json(indent=2))
    return result
