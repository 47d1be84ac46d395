"""How close each text is to its nearest reference text: cosine similarity over character n-gram TF-IDF.

Usage:
    from slmops.text.similarity import nearest_similarity
    nearest_similarity(["注文した加湿器が届きません。"], ["加湿器がまだ届きません", "新製品の予約について"])
    # -> array([0.6…, 0.0…]): the second text lies where the reference has nothing

Character n-grams (1-3) suit Japanese, which has no spaces between words; texts are folded first like the
near-duplicate key (NFKC, case, digits, punctuation). The vocabulary and IDF are fitted on the reference and
the texts together, so n-grams only the new texts use still count in their length: a text that shares a
greeting with the reference but talks about something new is not scored as close. Used by the monitor's
semantic drift signal and by harvest's "drifted region" flag.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slmops.text.dedup import near_dup_key

CHUNK = 2048  # texts compared at once: a CHUNK x len(reference) dense block


def nearest_similarity(reference: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """For each text, the highest cosine similarity to any reference text (0.0 when the reference is empty)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not texts:
        return np.zeros(0)
    if not reference:
        return np.zeros(len(texts))
    vectorizer = TfidfVectorizer(
        analyzer="char", ngram_range=(1, 3), preprocessor=near_dup_key, sublinear_tf=True, dtype=np.float32
    )
    vectorizer.fit([*reference, *texts])
    ref = vectorizer.transform(reference).T.tocsr()
    best = np.empty(len(texts), dtype=np.float32)
    for start in range(0, len(texts), CHUNK):
        block = vectorizer.transform(texts[start : start + CHUNK]) @ ref
        best[start : start + CHUNK] = block.max(axis=1).toarray().ravel()
    return best.astype(float)
