"""The continuous-improvement loop: monitor, harvest, trigger, champion vs challenger; DVC."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slmops.config.base import Strict


class MonitorConfig(Strict):
    window: int = 200  # most recent inference-log rows compared with the reference
    min_rows: int = 30
    drift_share: float = Field(0.5, gt=0.0, le=1.0)  # share of drifted tabular columns that counts as drift
    retrain_on_drift: bool = True
    # Semantic drift: how far each input is from its nearest reference input (cosine over character n-gram
    # TF-IDF), current window vs a held-out slice of the reference, one-sided Mann-Whitney. Drift needs both
    # the p-value under ``semantic_p_value`` and the effect (P(current row more novel than a reference row))
    # at or over ``semantic_min_effect``, so a large window does not flag a negligible shift.
    semantic: bool = True
    semantic_p_value: float = Field(0.001, gt=0.0, lt=1.0)
    semantic_min_effect: float = Field(0.6, ge=0.5, lt=1.0)
    semantic_max_reference: int = Field(3000, ge=50)  # reference rows used (a seeded sample of larger files)
    # Predicted-label distribution of every enum field vs the reference labels: drift when the chi-square
    # p-value is under ``label_p_value`` and the total-variation distance reaches ``label_min_distance``.
    label_p_value: float = Field(0.001, gt=0.0, lt=1.0)
    label_min_distance: float = Field(0.1, gt=0.0, le=1.0)
    # Rates of the window (absolute ceilings: the reference has no served answers to compare with).
    max_fallback_rate: float = Field(0.2, ge=0.0, le=1.0)  # answers the teacher gave instead of the student
    max_invalid_rate: float = Field(0.1, ge=0.0, le=1.0)  # answers that fail the task's schema
    low_confidence: float = Field(0.5, gt=0.0, le=1.0)  # a row whose least certain token is under this ...
    max_low_confidence_rate: float = Field(0.3, ge=0.0, le=1.0)  # ... counts; this share of them is drift


class HarvestConfig(Strict):
    """Answered traffic -> training candidates (``src/slmops/loop/harvest.py``)."""

    max_rows_per_batch: int = Field(500, ge=1)  # the most useful rows first (see ``priority``)
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)  # as synthesize's: among rows, vs train, vs eval
    low_confidence: float = Field(0.5, gt=0.0, le=1.0)  # least certain token under this: "low_confidence"
    # A row whose nearest training input is less similar than this (cosine, char n-gram TF-IDF) lies in a
    # region the training data does not cover: "drifted_region".
    novelty_similarity: float = Field(0.3, gt=0.0, le=1.0)
    include_unflagged: bool = True  # fill the batch with ordinary traffic once the flagged rows are in
    min_chars: int = Field(5, ge=1)


class TriggerConfig(Strict):
    """When drift starts a retrain (``src/slmops/loop/trigger.py``)."""

    consecutive_windows: int = Field(3, ge=1)  # drift in this many windows in a row (each window counted once)
    cooldown_hours: float = Field(24.0, ge=0.0)  # since the last retrain started
    min_new_rows: int = Field(100, ge=0)  # harvestable rows logged since the last harvest


class CompareConfig(Strict):
    """Champion vs challenger on the same rows (``src/slmops/loop/compare.py``)."""

    field: str | None = None  # the enum field judged per example; None: the task's stratify_by field
    test: Literal["mcnemar", "bootstrap", "both"] = "mcnemar"
    significance_on: Literal["recent", "gold", "pooled"] = "recent"  # the rows the paired test runs on
    alpha: float = Field(0.05, gt=0.0, lt=1.0)  # one-sided: the challenger is better
    min_samples: int = Field(50, ge=1)  # rows the paired test needs before it may pass
    max_gold_regression: float = Field(0.01, ge=0.0, le=1.0)  # accuracy the challenger may lose on gold
    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0


class LoopDemoConfig(Strict):
    """``slmops loop demo``: traffic from the task's demo generator sent through a real server."""

    control_windows: int = Field(1, ge=0)  # monitor windows of in-distribution traffic first (the control)
    max_shift_windows: int = Field(4, ge=1)  # windows of shifted traffic sent until a retrain starts
    eval_rows: int = Field(200, ge=10)  # a held-out shifted slice, never sent: measured before and after
    dev_set: str | None = None  # a hand-written labelled file (work-dir relative), measured, never sent
    port: int = Field(8765, ge=1, le=65535)
    concurrency: int = Field(4, ge=1)  # requests in flight from the demo's client


class LoopConfig(Strict):
    """The continuous-improvement loop: trigger, recent-traffic eval split, champion vs challenger."""

    trigger: TriggerConfig = TriggerConfig()
    compare: CompareConfig = CompareConfig()
    demo: LoopDemoConfig = LoopDemoConfig()
    # The most recent labelled harvest held out as the recent-traffic eval set (never trained on): the newest
    # ``recent_eval_rows`` rows if set, else the newest ``recent_eval_fraction`` of them.
    recent_eval_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    recent_eval_rows: int | None = Field(None, ge=1)
    init_from: Literal["base", "champion"] = "base"  # a retrain starts from the base model or the champion
    traffic_repeat: int = Field(3, ge=1)  # each labelled traffic row is trained on this many times per epoch
    auto_promote_to: Literal["poc", "pilot", "prod"] = "poc"  # how far a winning challenger moves by itself


class DvcConfig(Strict):
    commit: bool = False  # after a run, record outputs in dvc.lock and push them to the DVC remote
