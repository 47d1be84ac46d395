"""Drift signals that see meaning: what the inputs are about, what the model answers, how sure it is, how
often it needs the teacher. Pure functions over rows; ``src/slmops/loop/monitor.py`` assembles them.

Usage:
    from slmops.loop.drift import semantic_signal, label_signals, rate_signals
    semantic_signal(reference_inputs, window_inputs, cfg)     # Signal(name="semantic", drifted=..., ...)

- semantic: each input's cosine similarity to its nearest reference input (character n-gram TF-IDF,
  ``src/slmops/text/similarity.py``), for the window and for a held-out slice of the reference compared with the
  same remaining reference. One-sided Mann-Whitney: are window inputs further from the reference than
  reference inputs are? Held-out and window rows are exchangeable when nothing changed, so the p-value holds
  at any window size; the effect (P(a window row is further than a held-out row)) must also be large, so a
  10k-row window does not flag a negligible shift. One-sided on purpose: a reference that covers more than
  today's traffic (teacher-written examples, last season's products) is not drift. Evidently's text drift
  is a word-level TF-IDF domain classifier with English stop words, which does not split Japanese.
- label:<field>: the predicted distribution of every enum field (valid answers) vs the reference labels;
  chi-square, and the total-variation distance must reach ``label_min_distance``.
- fallback_rate, invalid_rate, low_confidence_rate: shares of the window over absolute ceilings (the
  reference has no served answers to compare with). Absent fields give no signal, not a zero.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from slmops.config import MonitorConfig
from slmops.tasks import Task


class Signal(BaseModel):
    name: str
    drifted: bool
    value: float | None  # the effect, distance or rate the decision used (None: not measurable here)
    threshold: float
    p_value: float | None = None
    detail: str = ""
    grew: list[str] = []  # label signals: the values whose share rose by at least half the distance threshold


def drifted_values(signals: Sequence[Signal]) -> dict[str, list[str]]:
    """``{"category": ["other"]}``: the predicted values that grew in drifted label signals (harvest puts rows
    answered with them first: ``harvest.run(..., drifted_values=...)``)."""
    return {s.name.removeprefix("label:"): s.grew for s in signals if s.name.startswith("label:") and s.drifted}


def semantic_signal(reference: Sequence[str], current: Sequence[str], cfg: MonitorConfig, seed: int = 0) -> Signal:
    from scipy.stats import mannwhitneyu

    from slmops.text.similarity import nearest_similarity

    ref = list(reference)
    random.Random(seed).shuffle(ref)
    ref = ref[: cfg.semantic_max_reference]
    n_hold = min(1000, len(ref) // 5)
    if n_hold < 20 or not current:
        return Signal(
            name="semantic", drifted=False, value=None, threshold=cfg.semantic_min_effect, detail="too few rows"
        )
    held, bank = ref[:n_hold], ref[n_hold:]
    sims = nearest_similarity(bank, held + list(current))
    s_held, s_cur = sims[:n_hold], sims[n_hold:]
    u, p = mannwhitneyu(s_held, s_cur, alternative="greater")
    effect = float(u) / (len(s_held) * len(s_cur))
    return Signal(
        name="semantic",
        drifted=bool(p < cfg.semantic_p_value and effect >= cfg.semantic_min_effect),
        value=effect,
        threshold=cfg.semantic_min_effect,
        p_value=float(p),
        detail=f"median similarity to the nearest reference input: window {float(_median(s_cur)):.2f}, "
        f"held-out reference {float(_median(s_held)):.2f}",
    )


def _median(values) -> float:
    import numpy as np

    return float(np.median(values))


def predicted(task: Task, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Each row's parsed answer (None when it fails the task's schema)."""
    out = []
    for row in rows:
        label = task.parse_output(row.get("output"))[0]
        out.append(label.model_dump() if label is not None else None)
    return out


def label_signals(
    task: Task, reference: Sequence[dict[str, Any]], answers: Sequence[dict[str, Any] | None], cfg: MonitorConfig
) -> list[Signal]:
    """One signal per enum field: reference labels (``expected``) vs the window's valid answers."""
    from scipy.stats import chi2_contingency

    signals = []
    for name in (k for k, f in task.fields.items() if f.type == "enum"):
        ref = Counter(r["expected"][name] for r in reference if name in (r.get("expected") or {}))
        cur = Counter(a[name] for a in answers if a is not None)
        values = sorted(set(ref) | set(cur))
        if not ref or not cur or len(values) < 2:
            signals.append(Signal(name=f"label:{name}", drifted=False, value=None, threshold=cfg.label_min_distance))
            continue
        n_ref, n_cur = sum(ref.values()), sum(cur.values())
        share = {v: (ref[v] / n_ref, cur[v] / n_cur) for v in values}
        distance = 0.5 * sum(abs(a - b) for a, b in share.values())
        p = float(chi2_contingency([[ref[v] for v in values], [cur[v] for v in values]])[1])
        grew = max(values, key=lambda v: share[v][1] - share[v][0])
        rising = [v for v in values if share[v][1] - share[v][0] >= cfg.label_min_distance / 2]
        signals.append(
            Signal(
                name=f"label:{name}",
                drifted=p < cfg.label_p_value and distance >= cfg.label_min_distance,
                value=distance,
                threshold=cfg.label_min_distance,
                p_value=p,
                detail=f"{grew} {share[grew][0]:.2f} -> {share[grew][1]:.2f} (total variation {distance:.2f})",
                grew=rising,
            )
        )
    return signals


def _rate(name: str, flags: list[bool], ceiling: float, what: str) -> Signal:
    if not flags:
        return Signal(name=name, drifted=False, value=None, threshold=ceiling, detail=f"no row carries {what}")
    rate = sum(flags) / len(flags)
    return Signal(name=name, drifted=rate > ceiling, value=rate, threshold=ceiling, detail=f"{sum(flags)}/{len(flags)}")


def rate_signals(rows: Sequence[dict[str, Any]], answers: Sequence[dict | None], cfg: MonitorConfig) -> list[Signal]:
    fallback = [r.get("served_by") == "teacher" or bool(r.get("fallback")) for r in rows if "served_by" in r]
    confidences = [r.get("min_token_prob", r.get("confidence")) for r in rows]
    low = [c < cfg.low_confidence for c in confidences if isinstance(c, int | float)]
    return [
        _rate("fallback_rate", fallback, cfg.max_fallback_rate, "served_by"),
        _rate("invalid_rate", [a is None for a in answers], cfg.max_invalid_rate, "an output"),
        _rate("low_confidence_rate", low, cfg.max_low_confidence_rate, "min_token_prob"),
    ]
