"""Fine-tuning changes the weights and beats the untrained model; QLoRA really loads the base in 4-bit."""

from __future__ import annotations

import pytest
import torch

from slmops.config import FinetuneConfig, LoraParams, TrainingConfig
from slmops.evaluate.stage import evaluate_model
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.tasks import load_task
from slmops.train.finetune import run
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


def test_qlora_loads_the_base_in_4bit(tiny_models):
    import bitsandbytes as bnb

    from slmops.train.finetune import _load_base

    model = _load_base(FinetuneConfig(method="qlora"), str(tiny_models["model"]))
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
