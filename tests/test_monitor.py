"""Drift: windows of new inquiries from the training distribution raise nothing; a new product line is seen
by its meaning alone; skewed answers, fallbacks, invalid output and low confidence each raise their signal."""

from __future__ import annotations

import json
import random

import pytest

from slmops.config import MonitorConfig
from slmops.demo.generate import generate
from slmops.demo.world import gold_reply
from slmops.io import write_jsonl
from slmops.loop.drift import drifted_values, label_signals, predicted, rate_signals, semantic_signal
from slmops.loop.monitor import run
from slmops.tasks import load_task
from slmops.text import pii
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
CFG = MonitorConfig(window=200, min_rows=30)
# A product line and complaints the generator never writes; its greetings and closings stay the same.
NEW = [
    "{p}のバッテリーが膨らんできて、使うのが怖いです。",
    "{p}の専用アプリで家族を招待しようとすると認証に失敗します。",
    "{p}の設置工事の日程がまだ決まらず、業者からも連絡がありません。",
    "{p}のレンタル料金が返却後も引き落とされています。",
    "{p}のリース契約を途中で終えたいのですが、違約金はいくらですか。",
    "{p}の管理者権限を、同居している家族に移したいです。",
    "自治体の補助金申請に使う{p}の領収書の書式が違うと言われました。",
]
PRODUCTS = ["EV充電器", "家庭用蓄電池", "スマートロック", "見守りカメラ", "太陽光パネル"]


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return [{"input": pii.mask(r["input"]), "expected": r["expected"]} for r in generate(11, 1500, 1, 1)["seed"]]


def log_rows(rows: list[dict], **fields) -> list[dict]:
    """As the server logs them: masked input, the (here: correct) answer, an id and a time."""
    return [
        {
            "id": f"chatcmpl-{i:06d}",
            "ts": f"2026-11-01T10:00:{i % 60:02d}+00:00",
            "status": 200,
            "served_by": "student",
            "fallback": None,
            "input": pii.mask(r["input"]),
            "output": task.format_output(
                r["expected"] | {"reply": gold_reply(**{k: r["expected"][k] for k in ("category", "priority")})}
            ),
        }
        | fields
        for i, r in enumerate(rows)
    ]


def in_distribution(seed: int, n: int = 200) -> list[dict]:
    return log_rows(generate(seed, 1, 1, n)["test"])


def new_product_line(n: int = 200) -> list[dict]:
    rng = random.Random(3)
    labels = [{"category": c, "priority": "medium"} for c in ["defect", "technical", "shipping", "billing"]]
    rows = [
        {"input": rng.choice(NEW).format(p=rng.choice(PRODUCTS)) + "よろしくお願いします。", "expected": labels[i % 4]}
        for i in range(n)
    ]
    return log_rows(rows)


def test_in_distribution_windows_raise_no_signal(reference):
    for seed in (101, 102, 103):
        window = in_distribution(seed)
        answers = predicted(task, window)
        semantic = semantic_signal([r["input"] for r in reference], [r["input"] for r in window], CFG)
        assert not semantic.drifted and semantic.p_value > CFG.semantic_p_value, semantic
        signals = label_signals(task, reference, answers, CFG) + rate_signals(window, answers, CFG)
        assert not any(s.drifted for s in signals), signals


def test_a_new_product_line_is_seen_by_meaning_even_with_right_answers(reference):
    window = new_product_line()
    semantic = semantic_signal([r["input"] for r in reference], [r["input"] for r in window], CFG)
    assert semantic.drifted and semantic.value > 0.9 and semantic.p_value < 1e-9, semantic
    half = in_distribution(104, 100) + new_product_line(100)  # half the traffic is new: still seen
    assert semantic_signal([r["input"] for r in reference], [r["input"] for r in half], CFG).drifted


def test_a_skewed_answer_distribution_raises_the_label_signal(reference):
    window = in_distribution(105)

    def as_other(row: dict) -> dict:  # the same answer, but "other" for the category
        return row | {"output": json.dumps(json.loads(row["output"]) | {"category": "other"}, ensure_ascii=False)}

    skewed = [as_other(r) if i % 2 else r for i, r in enumerate(window)]
    signals = {s.name: s for s in label_signals(task, reference, predicted(task, skewed), CFG)}
    assert signals["label:category"].drifted and "other" in signals["label:category"].detail
    assert not signals["label:priority"].drifted
    assert drifted_values(list(signals.values())) == {"category": ["other"]}  # what harvest puts first


def test_fallback_invalid_and_low_confidence_rates(reference):
    window = in_distribution(106, 100)
    for i, row in enumerate(window):
        row["min_token_prob"] = 0.3 if i % 2 else 0.9  # half the answers are unsure
        if i % 4 == 0:
            row.update(served_by="teacher", fallback="low_confidence")
        if i % 5 == 0:
            row["output"] = "{cut off"
    signals = {s.name: s for s in rate_signals(window, predicted(task, window), CFG)}
    assert signals["fallback_rate"].drifted and signals["fallback_rate"].value == 0.25
    assert signals["invalid_rate"].drifted and signals["invalid_rate"].value == 0.2
    assert signals["low_confidence_rate"].drifted and signals["low_confidence_rate"].value == 0.5
    plain = {s.name: s for s in rate_signals(in_distribution(107, 50), [{}] * 50, CFG)}
    assert plain["low_confidence_rate"].value is None and not plain["low_confidence_rate"].drifted  # not logged


def test_monitor_run_reports_a_shift_and_not_the_same_distribution(tmp_path, reference):
    write_jsonl(tmp_path / "reference.jsonl", reference)
    write_jsonl(tmp_path / "same.jsonl", in_distribution(108))
    same = run(
        CFG, task=task, reference=tmp_path / "reference.jsonl", log=tmp_path / "same.jsonl", out_dir=tmp_path / "a"
    )
    assert not same.drift_detected, same
    assert same.window_end_id == "chatcmpl-000199" and len(same.signals) == 6

    write_jsonl(tmp_path / "shifted.jsonl", in_distribution(109, 50) + new_product_line())
    drift = run(
        CFG, task=task, reference=tmp_path / "reference.jsonl", log=tmp_path / "shifted.jsonl", out_dir=tmp_path / "b"
    )
    assert drift.drift_detected and "semantic" in drift.drifted_columns and drift.rows_current == 200
    assert drift.report_html.stat().st_size > 10_000
    saved = json.loads((tmp_path / "b" / "drift.json").read_text())
    assert saved["drift_detected"] is True and any(s["name"] == "semantic" and s["drifted"] for s in saved["signals"])


def test_too_little_traffic_is_reported_not_guessed(tmp_path, reference):
    write_jsonl(tmp_path / "reference.jsonl", reference[:100])
    write_jsonl(tmp_path / "log.jsonl", in_distribution(110, 5))
    result = run(
        MonitorConfig(min_rows=30),
        task=task,
        reference=tmp_path / "reference.jsonl",
        log=tmp_path / "log.jsonl",
        out_dir=tmp_path / "m",
    )
    assert not result.drift_detected and "min_rows" in result.reason
