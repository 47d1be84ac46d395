"""Promotion gates per alias and parity thresholds."""

from __future__ import annotations

import itertools

from pydantic import Field, model_validator

from slmops.config.base import Strict


class GateThresholds(Strict):
    """Thresholds on evaluation metrics, by metric name (``json_valid_rate``, ``category_accuracy``,
    ``latency_p95_ms``, ``size_mb``, ...: whatever the task and evaluation report). A gate on a metric the
    candidate does not report fails, so a typo cannot pass silently."""

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    # Champion vs challenger: the candidate may trail the current holder by at most this much, per metric.
    max_regression_vs_champion: dict[str, float] = {}


class ParityThresholds(Strict):
    """What was trained is what is served: per step of trained -> merged -> ONNX fp32 -> quantized -> served,
    against the step before it (``src/slmops/evaluate/parity.py``). Failing blocks registration."""

    min_output_agreement: float = Field(0.9, ge=0.0, le=1.0)  # share of identical greedy answers
    min_label_agreement: float = Field(0.95, ge=0.0, le=1.0)  # share with the same parsed label
    max_prefill_logit_diff: float | None = Field(1e-2, gt=0.0)  # fp32 pairs only; None: not checked


class Gates(Strict):
    """Each stage at least as strict as the one before it: a model that passes prod passes pilot and poc."""

    poc: GateThresholds
    pilot: GateThresholds
    prod: GateThresholds
    parity: ParityThresholds = ParityThresholds()  # checked before any version is registered

    @model_validator(mode="after")
    def _stricter_each_stage(self) -> Gates:
        stages = [("poc", self.poc), ("pilot", self.pilot), ("prod", self.prod)]
        for (before, looser), (stage, stricter) in itertools.pairwise(stages):
            for metric, low in looser.min.items():
                high = stricter.min.get(metric)
                if high is None or high < low:
                    raise ValueError(f"{stage}.min.{metric} {high} is looser than {before}'s {low}")
            for metric, low in looser.max.items():
                high = stricter.max.get(metric)
                if high is None or high > low:
                    raise ValueError(f"{stage}.max.{metric} {high} is looser than {before}'s {low}")
        return self
