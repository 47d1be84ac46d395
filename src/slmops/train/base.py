"""The student's base for fine-tuning: fp32 for LoRA and full fine-tuning, 4-bit nf4 for QLoRA; the LoRA config.

Usage:
    model = load_base(FinetuneConfig(method="qlora"), "models/student_base")
    model = load_base(cfg, "models/student_base", adapter=Path("models/student/adapter"))  # train on from it
    peft_config = lora_config(cfg)
"""

from __future__ import annotations

from pathlib import Path

from slmops.config import FinetuneConfig


def _device_map():
    """CPU, or this process's GPU: under ``accelerate launch``/torchrun each rank loads onto its local device."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def load_base(cfg: FinetuneConfig, base_model: str, adapter: Path | None = None):
    """The base model for ``cfg.method`` (a resolved one: ``qlora`` loads 4-bit, anything else fp32), with the
    saved LoRA ``adapter`` on top, trainable, when given (training continues from it)."""
    model = _load(cfg, base_model)
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter, is_trainable=True)


def _load(cfg: FinetuneConfig, base_model: str):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if cfg.method != "qlora":
        return AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    q = cfg.quantization
    dtype = q.bnb_4bit_compute_dtype
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
        **q.extra,
    )
    model = AutoModelForCausalLM.from_pretrained(base_model, quantization_config=quant, device_map=_device_map())
    _keep_cpu_4bit_trainable(model)
    return model


def _keep_cpu_4bit_trainable(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight for its fast inference path the first
    time the layer runs in eval mode without grad (any evaluation), and later training steps then run on
    the repacked weight (older bitsandbytes: outside autograd). With 0.50.2 a 20-step probe trained either
    way, but with this off, evaluation mid-training (eval_steps, early stopping) keeps the same dequantize
    path as training, on every bitsandbytes version."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def lora_config(cfg: FinetuneConfig):
    """``peft.LoraConfig`` from ``finetune.lora`` (its pass-through keys included)."""
    from peft import LoraConfig

    lc = cfg.lora
    return LoraConfig(
        r=lc.r,
        lora_alpha=lc.alpha,
        modules_to_save=lc.modules_to_save,
        ensure_weight_tying=bool(lc.modules_to_save),
        lora_dropout=lc.dropout,
        target_modules=lc.target_modules,
        task_type="CAUSAL_LM",
        **lc.extra,
    )
