"""The task's parser and metrics, and the promotion gates as pure decisions."""

from __future__ import annotations

from slmops.config import GateThresholds
from slmops.registry.gates import decide
from slmops.tasks import load_task
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)

GOOD = '{"category": "billing", "priority": "high", "reply": "確認いたします。"}'


def test_parse_output_reasons():
    assert task.parse_output(GOOD)[0].category == "billing"
    assert task.parse_output("")[1] == "empty"
    assert task.parse_output("{oops")[1] == "invalid_json"
    assert task.parse_output("[1, 2]")[1] == "invalid_json"
    assert task.parse_output('{"category": "spam", "priority": "high", "reply": "x"}')[1] == "schema_violation"
    assert task.parse_output('{"category": "billing", "priority": "high"}')[1] == "schema_violation"
    assert task.parse_output("```json\n" + GOOD + "\n```")[0] is not None


def test_metrics_count_invalid_outputs_as_wrong():
    expected = [
        {"category": "billing", "priority": "high", "reply": "確認いたします。"},
        {"category": "shipping", "priority": "low"},
    ]
    m = task.compute_metrics([GOOD, "not json"], expected)
    assert m["category_accuracy"] == 0.5 and m["priority_accuracy"] == 0.5 and m["json_valid_rate"] == 0.5
    assert m["reply_chrf"] == 100.0  # only rows with a reference reply count


CANDIDATE = {
    "category_accuracy": 0.92,
    "priority_accuracy": 0.8,
    "json_valid_rate": 1.0,
    "latency_p95_ms": 50.0,
    "size_mb": 3.0,
}


def test_gate_passes_when_every_threshold_holds():
    gate = GateThresholds(min={"category_accuracy": 0.9}, max={"latency_p95_ms": 100, "size_mb": 5})
    d = decide(CANDIDATE, None, gate)
    assert d.passed and d.reasons == []


def test_gate_lists_every_failed_check():
    gate = GateThresholds(min={"category_accuracy": 0.95}, max={"latency_p95_ms": 10, "size_mb": 1})
    d = decide(CANDIDATE, None, gate)
    assert not d.passed
    assert len(d.reasons) == 3 and {k for k, ok in d.checks.items() if not ok} == {
        "min.category_accuracy",
        "max.latency_p95_ms",
        "max.size_mb",
    }


def test_champion_rule_blocks_a_regression_beyond_the_margin():
    rule = GateThresholds(max_regression_vs_champion={"category_accuracy": 0.01})
    assert decide(CANDIDATE, {"category_accuracy": 0.925}, rule).passed  # within the margin
    d = decide(CANDIDATE, {"category_accuracy": 0.95}, rule)
    assert not d.passed and "champion" in d.reasons[0]


def test_missing_metric_fails_the_gate():
    d = decide({}, None, GateThresholds(min={"json_valid_rate": 0.5}))
    assert not d.passed and "not reported" in d.reasons[0]
