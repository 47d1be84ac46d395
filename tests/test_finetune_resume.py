"""A killed training run continues from its last checkpoint; early stopping stops on eval loss (QLoRA, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmops.config import FinetuneConfig
from slmops.tasks import load_task
from slmops.train.finetune import last_checkpoint, run
from tests.projects import TRIAGE

MAX_STEPS = 60

task = load_task("ticket_triage", TRIAGE)


def _cfg(**training) -> FinetuneConfig:
    return FinetuneConfig(
        method="qlora",
        lora={"r": 4, "alpha": 8},
        training={"batch_size": 4, "learning_rate": 1e-3, "max_length": 96, "logging_steps": 1} | training,
    )


_CHILD = """
import sys
from pathlib import Path
from slmops.config import FinetuneConfig
from slmops.train.finetune import run
from slmops.tasks import load_task
from tests.projects import TRIAGE
cfg = FinetuneConfig.model_validate_json(sys.argv[1])
task = load_task("ticket_triage", TRIAGE)
run(cfg, train=Path(sys.argv[2]), val=None, base_model=sys.argv[3], out_dir=Path(sys.argv[4]), task=task)
"""


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, deadline_s: float = 300) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ckpt = last_checkpoint(out)
        if ckpt and (Path(ckpt) / "trainer_state.json").exists():
            return ckpt
        assert proc.poll() is None, f"training ended before the first checkpoint (rc {proc.returncode})"
        time.sleep(0.05)
    raise AssertionError("no checkpoint within the deadline")


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_final_step(tiny_models, tmp_path):
    train, base, out = tiny_models["prepared"] / "train.jsonl", str(tiny_models["model"]), tmp_path / "student"
    cfg = _cfg(max_steps=MAX_STEPS, save_steps=5)
    paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]  # keep the caller's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    child = [sys.executable, "-c", _CHILD, cfg.model_dump_json(), str(train), base, str(out)]
    proc = subprocess.Popen(child, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(out, proc)
        proc.send_signal(signal.SIGKILL)  # a real kill: no handler, no cleanup
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(Path(last_checkpoint(out)).name.split("-")[-1])
    assert 0 < killed_at < MAX_STEPS

    resumed = run(
        cfg.model_copy(update={"resume": True}), train=train, val=None, base_model=base, out_dir=out, task=task
    )
    assert resumed.resumed_from_step == killed_at
    assert resumed.global_step == MAX_STEPS
    logged = [h["step"] for h in resumed.log_history if "loss" in h]
    assert logged[-1] == MAX_STEPS and not (out / "checkpoints").exists()


@pytest.mark.slow
def test_early_stopping_stops_qlora_on_a_rising_eval_loss(tiny_models, tmp_path):
    prepared = tiny_models["prepared"]
    # A learning rate far too high: eval loss stops improving quickly and training stops early.
    cfg = _cfg(max_steps=200, learning_rate=0.5, eval_steps=2, early_stopping_patience=2)
    result = run(
        cfg,
        train=prepared / "train.jsonl",
        val=prepared / "val.jsonl",
        base_model=str(tiny_models["model"]),
        out_dir=tmp_path / "s",
        task=task,
    )
    evals = [h["eval_loss"] for h in result.log_history if "eval_loss" in h]
    assert result.global_step < 200 and len(evals) >= 3
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert all(loss == loss for loss in losses)  # finite: evaluation did not break the 4-bit training steps
