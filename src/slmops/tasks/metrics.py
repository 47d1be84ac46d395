"""Metrics over ``(prediction, reference)`` pairs of one output field; ``None`` prediction = invalid output.

Usage:
    compute("accuracy", [("billing", "billing"), (None, "shipping")])   # 0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Pairs = Sequence[tuple[Any, Any]]


def accuracy(pairs: Pairs) -> float:
    return sum(p == g for p, g in pairs) / len(pairs)


def macro_f1(pairs: Pairs, values: Sequence[str] | None) -> float:
    classes = list(values or {g for _, g in pairs})
    scores = []
    for c in classes:
        tp = sum(p == c and g == c for p, g in pairs)
        fp = sum(p == c and g != c for p, g in pairs)
        fn = sum(p != c and g == c for p, g in pairs)
        if tp + fp + fn:  # a class absent from both predictions and references says nothing
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def micro_f1(pairs: Pairs) -> float:
    tp = fp = fn = 0
    for p, g in pairs:
        predicted, gold = set(p or []), set(g)
        tp, fp, fn = tp + len(predicted & gold), fp + len(predicted - gold), fn + len(gold - predicted)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def set_accuracy(pairs: Pairs) -> float:
    return sum(p is not None and set(p) == set(g) for p, g in pairs) / len(pairs)


def mae(pairs: Pairs) -> float | None:
    """Mean absolute error over valid predictions (invalid ones are counted by ``json_valid_rate``)."""
    errors = [abs(float(p) - float(g)) for p, g in pairs if p is not None]
    return sum(errors) / len(errors) if errors else None


def chrf(pairs: Pairs) -> float:
    import sacrebleu

    # char_order=6 on raw characters suits Japanese, which has no spaces to split words on.
    hypotheses, references = [p or "" for p, _ in pairs], [g for _, g in pairs]
    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def compute(metric: str, pairs: Pairs, values: Sequence[str] | None = None) -> float | None:
    if not pairs:
        return None
    if metric == "macro_f1":
        return macro_f1(pairs, values)
    return {"accuracy": accuracy, "micro_f1": micro_f1, "set_accuracy": set_accuracy, "mae": mae, "chrf": chrf}[metric](
        pairs
    )
