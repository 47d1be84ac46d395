"""Diversity of the inputs a synthesize run wrote: distinct n-grams, coverage of the test set, grid cells.

Usage:
    distinct_n(["荷物が来ない", "請求が二重"], 2)          # unique character bigrams / all bigrams
    coverage(test_inputs, new_inputs, threshold=0.5)      # share of test inputs with a close new input

Characters, not words: Japanese has no spaces, so n-grams are over characters (NFKC-folded, whitespace
dropped). Coverage uses the TF-IDF cosine of ``slmops.text.similarity``: a test input counts as covered
when its nearest new input reaches ``threshold``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

from slmops.synthesize.grid import cell_figures
from slmops.text.similarity import nearest_similarity


def _chars(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct character n-grams over all n-grams in ``texts`` (0.0 when there are none)."""
    grams = [t[i : i + n] for t in map(_chars, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def coverage(test_inputs: Sequence[str], texts: Sequence[str], threshold: float) -> float:
    """Share of ``test_inputs`` whose nearest text in ``texts`` has cosine >= ``threshold``."""
    if not test_inputs:
        return 0.0
    return float((nearest_similarity(texts, test_inputs) >= threshold).mean())


def diversity_figures(
    written: Sequence[str],
    train: Sequence[str],
    test_inputs: Sequence[str],
    cells: Sequence[Mapping[str, str]],
    *,
    threshold: float,
    grid_size: int,
) -> dict[str, float]:
    """The run's figures: over the new inputs the teacher ``written`` (and kept), coverage also for the whole
    ``train`` file, and rows per attribute cell."""
    return {
        "written": float(len(written)),
        "distinct_1": round(distinct_n(written, 1), 4),
        "distinct_2": round(distinct_n(written, 2), 4),
        "coverage": round(coverage(test_inputs, written, threshold), 4),
        "coverage_train": round(coverage(test_inputs, train, threshold), 4),
    } | cell_figures(cells, grid_size)
