"""Diversity figures of a synthesize run: distinct character n-grams, coverage of the test inputs, cells."""

from __future__ import annotations

import pytest

from slmops.synthesize.diversity import coverage, distinct_n, diversity_figures


def test_distinct_n_counts_unique_character_ngrams():
    assert distinct_n(["abab"], 1) == 0.5  # a, b of a, b, a, b
    assert distinct_n(["abab"], 2) == pytest.approx(2 / 3)  # ab, ba of ab, ba, ab
    assert distinct_n(["ab", "cd"], 2) == 1.0
    assert distinct_n(["ab", "ab"], 2) == 0.5  # a repeated text halves it
    assert distinct_n(["ａ ｂ", "ab"], 2) == 0.5  # width folded, spaces dropped: both are "ab"
    assert distinct_n([], 1) == 0.0 and distinct_n(["a"], 2) == 0.0


def test_coverage_is_the_share_of_test_inputs_with_a_close_new_input():
    test = ["荷物がまだ届きません。", "請求が二重になっています。", "パスワードを忘れました。", "アプリが落ちます。"]
    written = ["荷物がまだ届きません!", "請求が二重になっていました。"]
    assert coverage(test, written, threshold=0.5) == 0.5
    assert coverage(test, written, threshold=0.9999) == 0.25  # punctuation is folded: the first is the same text
    assert coverage(test, [], threshold=0.5) == 0.0 and coverage([], written, threshold=0.5) == 0.0


def test_diversity_figures_name_every_figure():
    figures = diversity_figures(
        ["ab", "cd"], ["ab", "cd", "ef"], ["ab", "xy"], [{"r": "1"}, {"r": "1"}], threshold=0.9, grid_size=3
    )
    assert figures == {
        "written": 2.0,
        "distinct_1": 1.0,
        "distinct_2": 1.0,
        "coverage": 0.5,
        "coverage_train": 0.5,
        "cells_filled": 1.0,
        "cells_total": 3.0,
        "rows_per_cell_min": 2.0,
        "rows_per_cell_max": 2.0,
    }
