"""Training at the speed of the hardware, checked on a CPU without training anything: the method ``auto`` picks,
the throughput switches reaching ``SFTConfig``, and padding-free packing keeping each example to itself."""

from __future__ import annotations

import pytest

from slmops.config import FinetuneConfig, TrainingConfig, load_params
from slmops.train.method import choose_method
from tests.projects import REVIEWS, TRIAGE


def test_auto_is_qlora_on_cuda_and_lora_on_a_cpu_with_the_reason():
    assert FinetuneConfig().method == "auto"
    method, reason = choose_method("auto", cuda=False)
    assert method == "lora" and reason.startswith("auto: no CUDA device") and "finetune.method: qlora" in reason
    assert choose_method("auto", cuda=True) == (
        "qlora",
        "auto: CUDA device found, so QLoRA (4-bit base, LoRA adapters)",
    )


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
def test_a_method_set_explicitly_is_honoured(method, cuda):
    chosen, reason = choose_method(method, cuda=cuda)
    assert chosen == method and reason.startswith("set by finetune.method")
    assert ("slow" in reason) == (method == "qlora" and not cuda)


def test_the_example_projects_leave_the_method_to_auto():
    for root in (TRIAGE, REVIEWS):
        for profile in ("demo", "smoke"):
            assert load_params(profile, project=root).finetune.method == "auto"  # LoRA on a CPU, QLoRA on CUDA


def test_throughput_switches_are_off_by_default_and_reach_sft_config(tmp_path):
    from slmops.train.finetune import training_args

    default = training_args(TrainingConfig(), tmp_path, seed=1)
    assert not (default.packing or default.padding_free or default.gradient_checkpointing)
    assert not (default.auto_find_batch_size or default.use_liger_kernel)
    fast = TrainingConfig(packing=True, gradient_checkpointing=True, auto_find_batch_size=True)
    args = training_args(fast, tmp_path, seed=1)
    assert (args.packing, args.packing_strategy, args.padding_free) == (True, "bfd", True)
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert args.auto_find_batch_size
    # The demo's pretraining packs raw text its own way (the stage's keys win over the declared fields).
    wrapped = training_args(TrainingConfig(), tmp_path, seed=1, packing=True, packing_strategy="wrapped")
    assert (wrapped.packing, wrapped.packing_strategy, wrapped.padding_free) == (True, "wrapped", False)


def test_liger_kernels_need_the_package():
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here")
    with pytest.raises(ValueError, match="(?s)use_liger_kernel.*needs the liger-kernel package"):
        FinetuneConfig(training={"use_liger_kernel": True})


def test_padding_free_packing_keeps_each_example_to_itself():
    """The loss of three examples packed into one row (TRL's padding-free collator: position ids restart at each
    example, no attention mask) equals their loss padded in a batch: transformers' SDPA/eager attention builds a
    block-diagonal causal mask from the position ids (TRL's ``compute_loss`` passes ``use_cache=False``, which
    that needs). With positions running on across examples, they would attend to each other and the loss moves."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, num_key_value_heads=2, **shape)).eval()
    ids = torch.Generator().manual_seed(1)
    examples = [{"input_ids": torch.randint(1, 64, (n,), generator=ids).tolist()} for n in (5, 9, 3)]
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert packed["input_ids"].shape == (1, 17) and "attention_mask" not in packed
    run_on = packed | {"position_ids": torch.arange(17)[None]}
    with torch.no_grad():
        loss_padded, loss_packed, loss_run_on = (model(**b, use_cache=False).loss for b in (padded, packed, run_on))
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5)
    assert not torch.allclose(loss_run_on, loss_padded, atol=1e-4)
