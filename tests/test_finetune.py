"""Fine-tuning changes the weights and beats the untrained model; QLoRA really loads the base in 4-bit; epochs
``auto`` follow the data set's size and an under-trained run says so, naming the key to raise."""

from __future__ import annotations

import pytest
import torch

from slmops.config import FinetuneConfig, LoraParams, TrainingConfig
from slmops.evaluate.stage import evaluate_model
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.tasks import load_task
from slmops.train.finetune import run
from slmops.train.schedule import auto_epochs, choose_epochs, undertrained
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
def test_finetune_changes_weights_and_beats_the_untrained_model(tiny_models, tmp_path, method):
    from transformers import AutoModelForCausalLM

    cfg = FinetuneConfig(
        method=method,
        # A random-init base: its embeddings must move too, as with the demo's briefly pretrained base.
        lora=LoraParams(r=8, alpha=16, modules_to_save=["embed_tokens"]),
        training=TrainingConfig(
            epochs=30, batch_size=16, learning_rate=1e-2 if method != "full" else 5e-3, max_length=160
        ),
    )
    prepared = tiny_models["prepared"]
    result = run(
        cfg,
        task=task,
        train=prepared / "train.jsonl",
        val=prepared / "val.jsonl",
        base_model=str(tiny_models["model"]),
        out_dir=tmp_path / "student",
    )
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.3
    if method != "full":
        assert result.trainable_params < result.total_params / 2  # only the adapters trained
        assert (tmp_path / "student" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "student" / "loss_curve.png").stat().st_size > 0

    before = AutoModelForCausalLM.from_pretrained(tiny_models["model"])
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, before.get_parameter(n))]
    assert changed, "no parameter changed"

    rows = load_jsonl(prepared / "test.jsonl")[:10]
    untrained, _ = evaluate_model(ChatModel.load(tiny_models["model"]), task, rows, max_new_tokens=48)
    trained, _ = evaluate_model(ChatModel.load(tmp_path / "student"), task, rows, max_new_tokens=48)
    assert trained["reply_chrf"] > untrained["reply_chrf"] + 10
    assert trained["json_valid_rate"] > untrained["json_valid_rate"]


@pytest.mark.slow
def test_a_full_fine_tune_over_a_lora_run_leaves_no_stale_adapter(tiny_models, tmp_path):
    """Switching finetune.method from lora to full in the same project: the old adapter must not survive beside
    the new weights, or parity's `trained` step (base + adapter) compares a model that no longer exists."""
    prepared, out = tiny_models["prepared"], tmp_path / "student"
    for method in ("lora", "full"):
        cfg = FinetuneConfig(method=method, training=TrainingConfig(max_steps=2, batch_size=8, max_length=96))
        args = {"train": prepared / "train.jsonl", "val": prepared / "val.jsonl", "out_dir": out}
        run(cfg, task=task, base_model=str(tiny_models["model"]), **args)
        assert (out / "adapter").exists() == (method == "lora"), method
    assert (out / "model.safetensors").exists()


def test_qlora_loads_the_base_in_4bit(tiny_models):
    import bitsandbytes as bnb

    from slmops.train.base import load_base

    model = load_base(FinetuneConfig(method="qlora"), str(tiny_models["model"]))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_auto_epochs_follow_the_data_set_size():
    assert auto_epochs(400, 16)[0] == 12  # 25 steps an epoch, 300 target steps
    small, why = auto_epochs(100, 16)  # 7 steps an epoch: 42.9 epochs, capped
    assert small == 30 and "clamped" in why and "100 rows" in why
    assert auto_epochs(20_000, 16)[0] == 1  # 1,250 steps in one pass: never below one epoch
    assert auto_epochs(1, 16)[0] == 30 and auto_epochs(10**7, 64)[0] == 1
    assert auto_epochs(400, 16, grad_accum=4)[0] == 30  # 7 optimizer steps an epoch
    assert auto_epochs(4000, 16)[0] < auto_epochs(1000, 16)[0] < auto_epochs(400, 16)[0]


def test_choose_epochs_a_number_or_max_steps_wins_over_auto():
    assert choose_epochs(TrainingConfig(), 400)[0] == 12
    assert choose_epochs(TrainingConfig(gradient_accumulation_steps=2), 400)[0] == 23  # 13 steps an epoch
    assert choose_epochs(TrainingConfig(epochs=2), 400) == (2.0, "set by finetune.training.epochs")
    epochs, why = choose_epochs(TrainingConfig(max_steps=5), 60)  # 4 steps an epoch
    assert epochs == 1.25 and "max_steps 5" in why


def test_training_args_resolve_auto_epochs_from_the_rows(tmp_path):
    from slmops.train.finetune import training_args

    assert training_args(TrainingConfig(), tmp_path, seed=1, n_train=400).num_train_epochs == 12
    assert training_args(TrainingConfig(epochs=2.5), tmp_path, seed=1, n_train=400).num_train_epochs == 2.5


def test_epochs_is_auto_or_a_positive_number():
    assert TrainingConfig().epochs == "auto" and TrainingConfig(epochs="auto").epochs == "auto"
    assert TrainingConfig(epochs=6).epochs == 6
    for bad in ("fast", -1, 0, True):
        with pytest.raises(ValueError, match="epochs") as err:
            TrainingConfig(epochs=bad)
        assert "'auto'" in str(err.value)


def _history(losses: list[float], evals: list[float] = (), every: int = 5) -> list[dict]:
    """A trainer ``log_history``: a train loss every ``every`` steps, the eval losses spread over the run."""
    steps = len(losses) * every
    history = [{"loss": x, "step": (i + 1) * every, "epoch": (i + 1) * every / 10} for i, x in enumerate(losses)]
    history += [{"eval_loss": x, "step": steps * (i + 1) // len(evals)} for i, x in enumerate(evals)]
    return sorted(history, key=lambda h: h["step"]) + [{"train_loss": 1.0, "step": steps, "epoch": steps / 10}]


def test_a_loss_still_falling_in_the_last_quarter_is_under_trained():
    falling = _history([4.0, 3.8, 3.6, 3.4, 3.2, 3.02, 2.6, 2.31])  # step 30 of 40: 3.02
    message = undertrained(falling, TrainingConfig(epochs=2, undertrained_eval_loss=None))
    assert message.startswith("under-trained: train loss 2.31 still falling (3.02 -> 2.31")
    assert "raise finetune.training.epochs (now 2.0)" in message
    # With enough eval points the trend is read from the eval loss.
    evals = _history([0.5] * 8, evals=[3.5, 3.2, 3.02, 2.31])
    message = undertrained(evals, TrainingConfig(undertrained_eval_loss=None))
    assert "eval loss 2.31 still falling (3.02 -> 2.31" in message
    assert "finetune.training.epochs (now auto: 4.0)" in message  # the epochs auto chose, from the log


def test_a_final_eval_loss_above_the_threshold_is_under_trained():
    message = undertrained(_history([6.2], evals=[5.98]), TrainingConfig(max_steps=5))
    assert "final eval loss 5.98 above 1" in message and "undertrained_eval_loss" in message
    assert "raise finetune.training.max_steps (now 5)" in message
    assert undertrained(_history([6.2], evals=[5.98]), TrainingConfig(undertrained_eval_loss=None)) is None


def test_a_flat_low_loss_is_not_under_trained():
    assert undertrained(_history([0.30, 0.21, 0.20, 0.20, 0.19, 0.20], evals=[0.25]), TrainingConfig()) is None
    # A small drop on an already low loss (as the smoke run's 30 epochs end) is noise, not a trend.
    assert undertrained(_history([1.0, 0.2, 0.0436, 0.035, 0.0252]), TrainingConfig()) is None
    assert undertrained([], TrainingConfig()) is None


def test_a_run_cut_short_by_max_steps_warns(tiny_models, tmp_path, capsys):
    prepared = tiny_models["prepared"]
    result = run(
        FinetuneConfig(method="lora", training=TrainingConfig(max_steps=5, max_length=160)),
        task=task,
        train=prepared / "train.jsonl",
        val=prepared / "val.jsonl",
        base_model=str(tiny_models["model"]),
        out_dir=tmp_path / "student",
    )
    assert result.global_step == 5 and result.epochs == 5 / 4  # 60 rows at batch 16: 4 steps an epoch
    assert "max_steps 5" in result.epochs_reason
    assert result.warning and "finetune.training.max_steps (now 5)" in result.warning
    out = capsys.readouterr().out
    assert f"WARNING: {result.warning}" in out and "finetune epochs 1.25" in out
    dumped = result.model_dump(mode="json")
    assert (dumped["epochs"], dumped["warning"]) == (1.25, result.warning)
