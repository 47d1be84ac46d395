"""Champion vs challenger: the paired test passes a clear win only, never a tie, a small sample or a gold loss."""

from __future__ import annotations

import math

import pytest

from slmops.config import CompareConfig
from slmops.loop.compare import correctness, decide_challenger, judged_field, mcnemar_exact, paired
from slmops.tasks import load_task
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)


def pairs(both: int, champion_only: int, challenger_only: int, neither: int) -> list[tuple[bool, bool]]:
    rows = [(True, True)] * both + [(True, False)] * champion_only
    return rows + [(False, True)] * challenger_only + [(False, False)] * neither


GOLD_SAME = pairs(90, 2, 2, 6)  # 100 gold rows, both 0.92


def test_mcnemar_exact_matches_the_binomial_tail():
    # 2 of 12 discordant rows won by the champion: P(X >= 10), X ~ Bin(12, 1/2) = (66 + 12 + 1) / 4096
    assert math.isclose(mcnemar_exact(2, 10), 79 / 4096)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 2) > 0.99


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap", "both"])
def test_a_clear_win_on_recent_traffic_passes(test):
    recent = pairs(40, 3, 25, 12)  # challenger 0.81 vs champion 0.54 on 80 rows
    decision = decide_challenger(GOLD_SAME, recent, CompareConfig(test=test))
    assert decision.passed, decision.reasons
    assert decision.p_value < 0.001 and math.isclose(decision.statistic, 22 / 80)
    if test != "mcnemar":
        assert decision.tested.ci_low > 0


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap", "both"])
def test_a_tie_does_not_pass(test):
    recent = pairs(50, 10, 10, 10)
    decision = decide_challenger(GOLD_SAME, recent, CompareConfig(test=test))
    assert not decision.passed and all("not significant" in r for r in decision.reasons)
    assert decision.statistic == 0.0


def test_a_small_win_that_a_coin_could_give_does_not_pass():
    decision = decide_challenger(GOLD_SAME, pairs(60, 8, 13, 19), CompareConfig())
    assert not decision.passed and decision.p_value > 0.05, decision


def test_too_few_rows_never_pass_however_clear_the_win():
    recent = pairs(10, 0, 20, 0)  # 30 rows, the challenger wins every disagreement
    decision = decide_challenger(GOLD_SAME, recent, CompareConfig(min_samples=50))
    assert not decision.passed and decision.reasons == ["only 30 recent rows for the paired test; need 50"]
    assert decide_challenger(GOLD_SAME, recent, CompareConfig(min_samples=30)).passed


def test_a_gold_regression_beyond_the_threshold_fails_a_clear_win():
    recent = pairs(40, 3, 25, 12)
    gold = pairs(85, 7, 2, 6)  # challenger 0.87 vs champion 0.92 on gold
    decision = decide_challenger(gold, recent, CompareConfig(max_gold_regression=0.01))
    assert not decision.passed and len(decision.reasons) == 1 and "gold accuracy 0.8700" in decision.reasons[0]
    assert decide_challenger(gold, recent, CompareConfig(max_gold_regression=0.05)).passed
    assert not decide_challenger([], recent, CompareConfig()).passed  # no gold rows: cannot rule it out


def test_the_test_can_run_on_gold_or_pooled_rows():
    recent = pairs(10, 0, 5, 5)
    gold = pairs(50, 1, 20, 9)
    assert not decide_challenger(gold, recent, CompareConfig(significance_on="recent")).passed
    assert decide_challenger(gold, recent, CompareConfig(significance_on="gold")).passed
    pooled = decide_challenger(gold, recent, CompareConfig(significance_on="pooled"))
    assert pooled.passed and pooled.tested.n == 100


def test_correctness_per_field_and_exact_match_with_invalid_outputs_wrong():
    out = [
        '{"category": "billing", "priority": "high", "reply": "x"}',
        '{"category": "billing", "priority": "low", "reply": "x"}',
        "not json",
    ]
    ref = [{"category": "billing", "priority": "high"}] * 3
    assert correctness(task, out, ref, "category") == [True, True, False]
    assert correctness(task, out, ref, None) == [True, False, False]
    assert paired(task, out, list(reversed(out)), ref, "category") == [(True, False), (True, True), (False, True)]
    assert judged_field(task, CompareConfig()) == "category"
    with pytest.raises(ValueError, match="not an enum field"):
        judged_field(task, CompareConfig(field="reply"))


def test_the_console_table_lines_up_its_columns_for_long_model_names():
    from slmops.cli.common import metrics_table

    lines = metrics_table(
        {"teacher": {"category_accuracy": 1.0}, "student_genai_int4": {"category_accuracy": 0.99}}
    ).split("\n")
    assert len({len(line) for line in lines}) == 1  # every row as wide as the header
    assert all(line.endswith(value) for line, value in zip(lines[1:], ("1.000", "0.990"), strict=True))
