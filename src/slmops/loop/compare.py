"""Champion vs challenger on the same rows: a paired test and a no-regression check, as a pure decision.

Usage:
    from slmops.loop.compare import decide_challenger, paired
    gold = paired(task, champion_gold_outputs, challenger_gold_outputs, gold_expected, field="category")
    recent = paired(task, champion_recent_outputs, challenger_recent_outputs, recent_expected, field="category")
    decision = decide_challenger(gold, recent, params.loop.compare)   # .passed, .reasons, .p_value, ...

Each example is judged right or wrong for both models (the compared enum field, or the whole answer when no
field is named), so the test sees only the rows where they disagree. McNemar's exact test asks whether the
challenger wins more of those discordant rows than a coin would give it (one-sided binomial, p = P(X >= c) for
X ~ Bin(b + c, 1/2), b = rows only the champion got right, c = rows only the challenger got right). The
paired bootstrap resamples rows and gives a confidence interval of the accuracy difference. The challenger
wins only when the test passes on at least ``min_samples`` rows and it loses no more than
``max_gold_regression`` accuracy on the gold test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from slmops.config import CompareConfig
from slmops.tasks import Task

Pair = tuple[bool, bool]  # (champion right, challenger right) on one example


def judged_field(task: Task, cfg: CompareConfig) -> str | None:
    """The enum field compared per example: ``cfg.field``, else the task's ``stratify_by`` (None: exact match)."""
    name = cfg.field or task.stratify_by
    if name is not None and getattr(task.fields.get(name), "type", None) != "enum":
        raise ValueError(f"loop.compare.field {name!r} is not an enum field of task {task.name!r}")
    return name


def correctness(task: Task, outputs: Sequence[str | None], expected: Sequence[dict], field: str | None) -> list[bool]:
    """Per example: the output's ``field`` equals the reference's (``None``: every field the reference gives
    matches). An output that fails the task's schema is wrong."""
    if len(outputs) != len(expected):
        raise ValueError(f"{len(outputs)} outputs for {len(expected)} references")
    right = []
    for output, reference in zip(outputs, expected, strict=True):
        label = task.parse_output(output)[0]
        got: dict[str, Any] = label.model_dump() if label is not None else {}
        if field is not None:
            right.append(label is not None and got.get(field) == reference.get(field))
        else:
            right.append(label is not None and all(got.get(k) == v for k, v in reference.items() if k in task.fields))
    return right


def paired(
    task: Task,
    champion: Sequence[str | None],
    challenger: Sequence[str | None],
    expected: Sequence[dict],
    field: str | None,
) -> list[Pair]:
    """``(champion right, challenger right)`` for each example both models answered."""
    return list(
        zip(correctness(task, champion, expected, field), correctness(task, challenger, expected, field), strict=True)
    )


class PairedStats(BaseModel):
    n: int
    champion_accuracy: float
    challenger_accuracy: float
    difference: float  # challenger minus champion
    champion_only: int  # b: rows only the champion got right
    challenger_only: int  # c: rows only the challenger got right
    p_value: float  # McNemar exact, one-sided (the challenger is better)
    ci_low: float | None = None  # paired bootstrap interval of ``difference`` (alpha on each side)
    ci_high: float | None = None


def mcnemar_exact(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar p-value that the challenger is better (1.0 when the models never disagree)."""
    from scipy.stats import binomtest

    discordant = champion_only + challenger_only
    if discordant == 0:
        return 1.0
    return float(binomtest(challenger_only, discordant, 0.5, alternative="greater").pvalue)


def bootstrap_interval(pairs: Sequence[Pair], samples: int, alpha: float, seed: int) -> tuple[float, float]:
    """Percentile interval (alpha, 1 - alpha) of the accuracy difference over rows resampled in pairs."""
    import numpy as np

    diff = np.array([int(b) - int(a) for a, b in pairs], dtype=np.int8)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_stats(pairs: Sequence[Pair], cfg: CompareConfig, bootstrap: bool = True) -> PairedStats | None:
    if not pairs:
        return None
    n = len(pairs)
    champion = sum(a for a, _ in pairs) / n
    challenger = sum(b for _, b in pairs) / n
    b = sum(a and not c for a, c in pairs)
    c = sum(c and not a for a, c in pairs)
    low = high = None
    if bootstrap:
        low, high = bootstrap_interval(pairs, cfg.bootstrap_samples, cfg.alpha, cfg.seed)
    return PairedStats(
        n=n,
        champion_accuracy=champion,
        challenger_accuracy=challenger,
        difference=challenger - champion,
        champion_only=b,
        challenger_only=c,
        p_value=mcnemar_exact(b, c),
        ci_low=low,
        ci_high=high,
    )


class ChallengerDecision(BaseModel):
    passed: bool
    reasons: list[str]  # every failed check, worded for a person; empty when passed
    tested_on: str  # the rows the paired test ran on: recent, gold or pooled
    statistic: float | None  # the accuracy difference (challenger - champion) on those rows
    p_value: float | None  # McNemar exact, one-sided
    gold: PairedStats | None
    recent: PairedStats | None
    tested: PairedStats | None


def _significance(tested: PairedStats, cfg: CompareConfig) -> list[str]:
    reasons = []
    won = f"challenger right on {tested.challenger_only}, champion on {tested.champion_only} of the rows they split"
    if cfg.test in ("mcnemar", "both") and not tested.p_value < cfg.alpha:
        reasons.append(f"not significant: McNemar p={tested.p_value:.4g} >= alpha {cfg.alpha} ({won})")
    if cfg.test in ("bootstrap", "both") and not (tested.ci_low is not None and tested.ci_low > 0):
        reasons.append(
            f"not significant: bootstrap interval of the accuracy difference [{tested.ci_low:.4f}, "
            f"{tested.ci_high:.4f}] reaches 0"
        )
    return reasons


def decide_challenger(gold: Sequence[Pair], recent: Sequence[Pair], cfg: CompareConfig) -> ChallengerDecision:
    """The challenger wins only with a significant paired improvement on at least ``min_samples`` rows
    (``significance_on``) and no gold-set regression beyond ``max_gold_regression``."""
    rows = {"recent": list(recent), "gold": list(gold), "pooled": list(recent) + list(gold)}[cfg.significance_on]
    gold_stats, recent_stats = paired_stats(gold, cfg), paired_stats(recent, cfg)
    tested = paired_stats(rows, cfg)
    reasons: list[str] = []
    if len(rows) < cfg.min_samples:
        reasons.append(f"only {len(rows)} {cfg.significance_on} rows for the paired test; need {cfg.min_samples}")
    elif tested is not None:
        reasons += _significance(tested, cfg)
    if gold_stats is None:
        reasons.append("no gold rows: a regression on the gold test set cannot be ruled out")
    elif gold_stats.difference < -cfg.max_gold_regression - 1e-12:  # exactly at the margin passes
        reasons.append(
            f"gold accuracy {gold_stats.challenger_accuracy:.4f} trails the champion's "
            f"{gold_stats.champion_accuracy:.4f} by more than {cfg.max_gold_regression}"
        )
    return ChallengerDecision(
        passed=not reasons,
        reasons=reasons,
        tested_on=cfg.significance_on,
        statistic=tested.difference if tested else None,
        p_value=tested.p_value if tested else None,
        gold=gold_stats,
        recent=recent_stats,
        tested=tested,
    )
