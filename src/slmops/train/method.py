"""Which fine-tuning method runs: ``finetune.method: auto`` picks QLoRA on CUDA and LoRA on a CPU.

Usage:
    method, reason = choose_method("auto", cuda=False)   # ("lora", "auto: no CUDA device ...")

A pure function of the configured value and whether CUDA is there, so the rule is tested without a GPU.
"""

from __future__ import annotations

AUTO_ON_CPU = (
    "auto: no CUDA device, so LoRA on the fp32 base (QLoRA's 4-bit CPU kernels are ~46x slower per step; "
    "set finetune.method: qlora to use it anyway)"
)
AUTO_ON_CUDA = "auto: CUDA device found, so QLoRA (4-bit base, LoRA adapters)"


def choose_method(requested: str, cuda: bool) -> tuple[str, str]:
    """``(method, one-line reason)``. ``auto`` becomes ``qlora`` with CUDA, else ``lora``; any other value is used
    as set (an explicit ``qlora`` on a CPU is honoured: bitsandbytes has CPU kernels, only slower)."""
    if requested != "auto":
        slow = " (no CUDA device: bitsandbytes' CPU kernels, slow)" if requested == "qlora" and not cuda else ""
        return requested, f"set by finetune.method{slow}"
    return ("qlora", AUTO_ON_CUDA) if cuda else ("lora", AUTO_ON_CPU)
