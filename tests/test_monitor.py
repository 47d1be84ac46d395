"""Drift: a shifted window of traffic is flagged, an unshifted one is not."""

from __future__ import annotations

import json

from components.config import MonitorConfig
from components.demo.generate import generate
from components.io import write_jsonl
from components.monitor import run
from components.tasks import load_task

task = load_task("ticket_triage")


def _log(path, rows):
    write_jsonl(path, [{"input": r["input"], "output": task.format_output(r["expected"])} for r in rows])


def test_drift_on_a_shifted_window_and_not_on_an_unshifted_one(tmp_path):
    sets = generate(11, 600, 10, 200)
    ref = tmp_path / "reference.jsonl"
    write_jsonl(ref, sets["seed"])
    cfg = MonitorConfig(window=200, min_rows=30)

    _log(tmp_path / "same.jsonl", sets["test"])  # same distribution, different texts
    same = run(
        cfg, task=task, reference=tmp_path / "reference.jsonl", log=tmp_path / "same.jsonl", out_dir=tmp_path / "m1"
    )
    assert not same.drift_detected, same

    shifted = [
        {
            "input": f"URGENT!!! Your server returned error {i} again, fix it now or we cancel the contract. "
            "This is the third time this week and nobody answers the phone.",
            "expected": {"category": "technical", "priority": "urgent", "reply": "至急対応いたします。"},
        }
        for i in range(200)
    ]
    _log(tmp_path / "shifted.jsonl", shifted)
    drift = run(
        cfg, task=task, reference=tmp_path / "reference.jsonl", log=tmp_path / "shifted.jsonl", out_dir=tmp_path / "m2"
    )
    assert drift.drift_detected and {"length", "ascii_ratio", "category"} <= set(drift.drifted_columns)
    assert drift.report_html.stat().st_size > 10_000
    assert json.loads((tmp_path / "m2" / "drift.json").read_text())["drift_detected"] is True


def test_too_little_traffic_is_reported_not_guessed(tmp_path):
    sets = generate(2, 50, 10, 10)
    ref = tmp_path / "reference.jsonl"
    write_jsonl(ref, sets["seed"])
    _log(tmp_path / "log.jsonl", sets["test"][:5])
    result = run(
        MonitorConfig(min_rows=30),
        task=task,
        reference=tmp_path / "reference.jsonl",
        log=tmp_path / "log.jsonl",
        out_dir=tmp_path / "m",
    )
    assert not result.drift_detected and "min_rows" in result.reason
