"""One quiet progress bar for training, instead of transformers' bars and printed log dicts.

Usage:
    trainer = SFTTrainer(..., callbacks=[TrainingBar("finetune")])
    quiet(trainer)     # drop transformers' own printer/progress callbacks
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


class TrainingBar(TrainerCallback):
    """A transient bar (steps, rate, ETA, last loss) that disappears when training ends."""

    def __init__(self, desc: str = "train"):
        self.desc, self.bar = desc, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.desc, unit="step", leave=False, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet(trainer, desc: str = "train") -> None:
    """Replace the trainer's console output (tqdm bars, printed metric dicts) with one ``TrainingBar``."""
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    if os.environ.get("RANK", "0") == "0":  # several processes (accelerate launch): one bar, rank 0's
        trainer.add_callback(TrainingBar(desc))
