"""Promotion gates as pure decisions: ``decide(candidate, champion, thresholds) -> Decision``.

Usage:
    decision = decide({"category_accuracy": 0.93, ...}, champion=None, thresholds=load_gates().poc)
    if not decision.passed: print(decision.reasons)

Thresholds name metrics (``tasks/<task>.gates.yaml`` in the project: ``min``, ``max``,
``max_regression_vs_champion``); a metric the
candidate does not report fails its check, so a misspelt gate cannot pass silently.
"""

from __future__ import annotations

from pydantic import BaseModel

from slmops.config import GateThresholds


class Decision(BaseModel):
    stage: str
    passed: bool
    reasons: list[str]  # every failed check, worded for a person; empty when passed
    checks: dict[str, bool]


def decide(
    candidate: dict[str, float], champion: dict[str, float] | None, thresholds: GateThresholds, stage: str = ""
) -> Decision:
    checks: dict[str, bool] = {}
    reasons: list[str] = []

    def check(name: str, ok: bool, why: str) -> None:
        checks[name] = ok
        if not ok:
            reasons.append(why)

    for metric, floor in thresholds.min.items():
        value = candidate.get(metric)
        shown = "not reported" if value is None else round(value, 4)
        check(f"min.{metric}", value is not None and value >= floor, f"{metric} {shown} < required {floor}")
    for metric, ceiling in thresholds.max.items():
        value = candidate.get(metric)
        shown = "not reported" if value is None else round(value, 4)
        check(f"max.{metric}", value is not None and value <= ceiling, f"{metric} {shown} > allowed {ceiling}")
    for metric, margin in thresholds.max_regression_vs_champion.items():
        if champion is None:
            continue
        ours, theirs = candidate.get(metric, 0.0), champion.get(metric, 0.0)
        check(
            f"champion.{metric}",
            ours >= theirs - margin,
            f"{metric} {ours:.4f} trails the current champion's {theirs:.4f} by more than {margin}",
        )
    return Decision(stage=stage, passed=not reasons, reasons=reasons, checks=checks)
