"""How long fine-tuning runs (``finetune.training.epochs: auto``) and whether the result looks under-trained.

Pure functions of counts, the config and the trainer's ``log_history``: no torch, no transformers.
"""

from __future__ import annotations

import math
import os
from typing import Any

from slmops.config import TrainingConfig

TARGET_STEPS = 300  # optimizer steps ``auto`` aims at
MIN_EPOCHS, MAX_EPOCHS = 1, 30
FALLBACK_EPOCHS = 3.0  # ``auto`` with no row count to go by (transformers' own default)

LAST_PART = 0.75  # "still falling": the last logged loss vs the one logged at 75% of the steps
FALLING_RATIO = 0.9  # ... is below 90% of it
MIN_DROP = 0.05  # ... and lower by at least this much (0.04 -> 0.025 is noise on a fitted model, not a trend)
MIN_EVAL_POINTS = 3  # fewer eval points than this: judge the trend from the train loss


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps in one pass over ``n_examples`` (the last, partial batch counts, as in transformers)."""
    return max(1, math.ceil(math.ceil(n_examples / batch_size) / grad_accum))


def auto_epochs(n_examples: int, batch_size: int, grad_accum: int = 1) -> tuple[float, str]:
    """Epochs for about ``TARGET_STEPS`` (300) optimizer steps, rounded, within [1, 30]; and a one-line reason.

    Like hosted fine-tuning services, the number of passes follows the data set's size: a small set is
    repeated until the optimizer has taken enough steps to learn the format, a large one is seen once.
    ``batch_size`` is the rows per device step times the number of devices.

    * 400 rows at batch 16: 25 steps an epoch, 300 / 25 = 12 epochs (300 steps).
    * 20,000 rows at batch 16: 1,250 steps an epoch, 300 / 1,250 = 0.24, so 1 epoch (1,250 steps).
    * 100 rows at batch 16: 7 steps an epoch, 300 / 7 = 42.9, capped at 30 epochs (210 steps).
    """
    per_epoch = steps_per_epoch(n_examples, batch_size, grad_accum)
    raw = TARGET_STEPS / per_epoch
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(raw)))
    accum = f" x {grad_accum} accumulated" if grad_accum > 1 else ""
    clamped = ", clamped to [1, 30]" if epochs != round(raw) else ""
    why = (
        f"auto: {n_examples} rows at batch {batch_size}{accum} = {per_epoch} steps an epoch; "
        f"{TARGET_STEPS} target steps / {per_epoch} = {raw:.2f} -> {epochs} epoch{'s' if epochs > 1 else ''} "
        f"({epochs * per_epoch} steps{clamped})"
    )
    return float(epochs), why


def choose_epochs(cfg: TrainingConfig, n_train: int | None) -> tuple[float, str]:
    """The epochs a run trains and why: ``max_steps`` > 0 wins (as in transformers; the epochs it amounts to),
    then a number in ``finetune.training.epochs``, then ``auto`` on the ``n_train`` rows."""
    accum = int(cfg.extra.get("gradient_accumulation_steps", 1))
    batch = cfg.batch_size * int(os.environ.get("WORLD_SIZE", "1"))  # every device takes its own batch
    fixed = float(cfg.epochs) if cfg.epochs != "auto" else FALLBACK_EPOCHS
    if cfg.max_steps > 0:
        if not n_train:
            return fixed, f"finetune.training.max_steps {cfg.max_steps} wins over epochs"
        epochs = round(cfg.max_steps / steps_per_epoch(n_train, batch, accum), 2)
        return epochs, f"finetune.training.max_steps {cfg.max_steps} wins over epochs ({epochs} of {n_train} rows)"
    if cfg.epochs != "auto":
        return fixed, "set by finetune.training.epochs"
    if not n_train:
        return fixed, f"auto without a row count: {fixed:g}"
    return auto_epochs(n_train, batch, accum)


def _series(log_history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(h.get("step", i), h[key]) for i, h in enumerate(log_history) if key in h]


def _still_falling(series: list[tuple[float, float]]) -> tuple[float, float] | None:
    """``(loss at ~75% of the steps, last loss)`` when the loss fell by over 10% (and ``MIN_DROP``) since."""
    if len(series) < 2:
        return None
    last_step, last = series[-1]
    earlier = [loss for step, loss in series[:-1] if step <= LAST_PART * last_step]
    if not earlier:
        return None
    before = earlier[-1]
    return (before, last) if last < FALLING_RATIO * before and before - last >= MIN_DROP else None


def _what_to_raise(log_history: list[dict[str, Any]], cfg: TrainingConfig) -> str:
    if cfg.max_steps > 0:
        return f"raise finetune.training.max_steps (now {cfg.max_steps})"
    trained = next((h["epoch"] for h in reversed(log_history) if "epoch" in h), None)
    now = f"{round(float(cfg.epochs), 2)}" if cfg.epochs != "auto" else "auto"
    if cfg.epochs == "auto" and trained is not None:
        now += f": {round(float(trained), 2)}"
    return f"raise finetune.training.epochs (now {now}) or finetune.training.max_steps"


def undertrained(log_history: list[dict[str, Any]], cfg: TrainingConfig) -> str | None:
    """A message naming the key to raise when the run looks under-trained, else None.

    Under-trained: the final eval loss is above ``cfg.undertrained_eval_loss``, or the loss still fell
    substantially over the last quarter of training (the last logged loss below 0.9 x the one logged at ~75%
    of the steps, and lower by at least 0.05). The trend is read from the eval loss when there are at least 3
    eval points (``eval_steps``), else from the train loss.
    """
    evals, problems = _series(log_history, "eval_loss"), []
    limit = cfg.undertrained_eval_loss
    if evals and limit is not None and evals[-1][1] > limit:
        problems.append(
            f"final eval loss {evals[-1][1]:.2f} above {limit:g} (finetune.training.undertrained_eval_loss)"
        )
    name, series = ("eval", evals) if len(evals) >= MIN_EVAL_POINTS else ("train", _series(log_history, "loss"))
    falling = _still_falling(series)
    if falling:
        before, last = falling
        problems.append(f"{name} loss {last:.2f} still falling ({before:.2f} -> {last:.2f} over the last quarter)")
    if not problems:
        return None
    return f"under-trained: {'; '.join(problems)}; {_what_to_raise(log_history, cfg)}"
