"""benchmarks/demo_coverage.py: keyword coverage, mixed cues and fresh teacher-written rows are counted right."""

from benchmarks.demo_coverage import fresh_rows, keyword_coverage, mixed_cue_share, sample
from slmops.demo.lexicon import CATEGORY_KEYWORDS
from slmops.demo.teacher import classify


def test_keyword_coverage_counts_words_seen_once_and_five_times():
    n_words = len({k for ws in CATEGORY_KEYWORDS.values() for k in ws})
    once = keyword_coverage(["請求が来ました"] + ["再配達をお願いします"] * 5)  # 再配達 holds 配達 too
    assert once["words_ge1"] == 3 / n_words and once["words_ge5"] == 2 / n_words
    assert once["weight_ge5"] < once["weight_ge1"] < 0.05
    assert keyword_coverage(["こんにちは"])["words_ge1"] == 0


def test_mixed_cues_are_inputs_with_keywords_of_two_categories():
    assert mixed_cue_share(["荷物が壊れていました", "請求額が違います", "こんにちは"]) == 1 / 3


def test_fresh_rows_are_new_teacher_written_inputs_of_each_category():
    first = fresh_rows(3, seed=1, seen=set())
    assert len(first) == 3 * len(CATEGORY_KEYWORDS)
    assert all(classify(r["input"]) == r["expected"]["category"] for r in first)
    again = fresh_rows(3, seed=1, seen={r["input"] for r in first})
    assert not {r["input"] for r in again} & {r["input"] for r in first}


def test_sample_takes_at_most_n_per_category():
    rows = [{"input": str(i), "expected": {"category": "ab"[i % 2]}} for i in range(10)]
    assert sorted(r["expected"]["category"] for r in sample(rows, 2, seed=0)) == ["a", "a", "b", "b"]
