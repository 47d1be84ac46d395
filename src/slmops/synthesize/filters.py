"""Filters on the teacher's new inputs before they are labelled: novelty against everything trained or tested on.

Usage:
    reasons = novelty_rejects(new_texts, train_inputs, test_inputs, max_similarity=0.9)
    # -> [None, "not_novel:0.97 to a test input", ...]: None keeps the text

The MinHash near-duplicate checks (``check_new_input``) catch copies; this one catches close rewrites,
with the TF-IDF cosine over character 1-3 grams of ``slmops.text.similarity``. The second filter,
agreement, is the labeller's blind relabelling (``Labeller.label(..., wanted=...)``: ``label_mismatch``).
"""

from __future__ import annotations

from collections.abc import Sequence

from slmops.text.similarity import nearest_similarity

NOT_NOVEL = "not_novel"


def novelty_rejects(
    texts: Sequence[str], train_inputs: Sequence[str], test_inputs: Sequence[str], max_similarity: float | None
) -> list[str | None]:
    """Per text, None when it is novel, else the reject reason with its closest similarity and to what."""
    if max_similarity is None or not texts:
        return [None] * len(texts)
    vs_train = nearest_similarity(train_inputs, texts)
    vs_test = nearest_similarity(test_inputs, texts)
    reasons: list[str | None] = []
    for train_sim, test_sim in zip(vs_train, vs_test, strict=True):
        if test_sim >= max_similarity:
            reasons.append(f"{NOT_NOVEL}:{test_sim:.3f} to a test input")
        elif train_sim >= max_similarity:
            reasons.append(f"{NOT_NOVEL}:{train_sim:.3f} to a training input")
        else:
            reasons.append(None)
    return reasons
