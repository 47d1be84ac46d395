"""finetune.lora / .training / .quantization pass extra keys to peft / trl / transformers, checked at load."""

from __future__ import annotations

import pytest

from slmops.config import FinetuneConfig, ParamsError, QuantizeConfig, load_params
from slmops.export.quantize import choose_candidate
from tests.projects import TRIAGE


@pytest.mark.parametrize(
    ("section", "key", "library"),
    [
        ("lora", "lora_alpah", "peft.LoraConfig"),
        ("training", "adam_beta", "trl.SFTConfig"),
        ("quantization", "bnb_4bit_quant_stroage", "transformers.BitsAndBytesConfig"),
    ],
)
def test_an_unknown_pass_through_key_fails_at_load_naming_it(tmp_path, section, key, library):
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"finetune:\n  {section}:\n    {key}: 1\n")
    with pytest.raises(ParamsError) as err:
        load_params("smoke", project=TRIAGE, extra=extra)
    message = str(err.value)
    assert f"finetune.{section}" in message and key in message and library in message and str(extra) in message


def test_a_key_slmops_sets_itself_is_refused_with_the_field_to_use():
    with pytest.raises(ValueError, match="num_train_epochs: set epochs instead"):
        FinetuneConfig(training={"num_train_epochs": 2})


def test_pass_through_keys_reach_the_library_config_and_defaults_keep_todays_behaviour(tmp_path):
    from slmops.train.base import lora_config
    from slmops.train.finetune import training_args

    default = training_args(FinetuneConfig().training, tmp_path, seed=1)
    assert (default.adam_beta2, default.lr_scheduler_type, default.save_strategy) == (0.95, "cosine", "no")
    q = FinetuneConfig().quantization
    assert (q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == ("nf4", True)

    cfg = FinetuneConfig(
        lora={"r": 4, "use_rslora": True},
        training={"gradient_accumulation_steps": 3, "lr_scheduler_type": "linear", "save_steps": 7},
    )
    args = training_args(cfg.training, tmp_path, seed=1)
    assert (args.gradient_accumulation_steps, args.lr_scheduler_type) == (3, "linear")
    assert (args.save_strategy, args.save_steps) == ("steps", 7)
    lora = lora_config(cfg)
    assert lora.use_rslora is True and lora.r == 4


def test_early_stopping_needs_an_eval_interval():
    with pytest.raises(ValueError, match="early_stopping_patience needs eval_steps"):
        FinetuneConfig(training={"early_stopping_patience": 2})


def test_int4_settings_are_checked():
    assert QuantizeConfig(candidates=["int8", "int4", "int8"]).forms == ["int8", "int4"]
    with pytest.raises(ValueError, match="not a power of two"):
        QuantizeConfig(weight_type="int4", int4_block_size=48)
    with pytest.raises(ValueError, match="weight_type 'int8' is not among candidates"):  # the fallback form
        QuantizeConfig(candidates=["int4"])


def test_choose_candidate_registers_the_smallest_that_passes():
    metrics = {"int8": {"acc": 0.95}, "int4": {"acc": 0.80}, "uint8": {"acc": 0.94}}
    sizes = {"int8": 10.0, "int4": 4.0, "uint8": 9.5}
    assert choose_candidate(metrics, sizes, lambda m: m["acc"] >= 0.9) == "uint8"
    assert choose_candidate(metrics, sizes, lambda m: m["acc"] >= 0.5) == "int4"
    assert choose_candidate(metrics, sizes, lambda m: m["acc"] >= 0.99) is None
