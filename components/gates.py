"""Promotion gates as pure decisions: ``decide(candidate, champion, thresholds) -> Decision``.

Usage:
    decision = decide({"category_accuracy": 0.93, ...}, champion=None, thresholds=load_gates().poc)
    if not decision.passed: print(decision.reasons)
"""

from __future__ import annotations

from pydantic import BaseModel

from components.config import GateThresholds


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

    for metric in ("category_accuracy", "priority_accuracy", "json_valid_rate"):
        floor = getattr(thresholds, f"min_{metric}")
        value = candidate.get(metric)
        check(
            f"min_{metric}",
            value is not None and value >= floor,
            f"{metric} {value if value is None else round(value, 4)} < required {floor}",
        )
    if thresholds.max_p95_latency_ms is not None:
        value = candidate.get("latency_p95_ms")
        check(
            "max_p95_latency_ms",
            value is not None and value <= thresholds.max_p95_latency_ms,
            f"latency_p95_ms {value} > allowed {thresholds.max_p95_latency_ms}",
        )
    if thresholds.max_size_mb is not None:
        value = candidate.get("size_mb")
        check(
            "max_size_mb",
            value is not None and value <= thresholds.max_size_mb,
            f"size_mb {value} > allowed {thresholds.max_size_mb}",
        )
    if thresholds.max_regression_vs_champion is not None and champion is not None:
        ours, theirs = candidate.get("category_accuracy", 0.0), champion.get("category_accuracy", 0.0)
        check(
            "champion",
            ours >= theirs - thresholds.max_regression_vs_champion,
            f"category_accuracy {ours:.4f} trails the current champion's {theirs:.4f} by more than "
            f"{thresholds.max_regression_vs_champion}",
        )
    return Decision(stage=stage, passed=not reasons, reasons=reasons, checks=checks)
