"""Multi-LoRA on our torch form, in vLLM's ``--lora-modules name=path`` convention: one base model loaded once,
each adapter loaded beside it with peft and served as its own model name.

Usage:
    model = with_lora_modules(ChatModel.load("models/base"), {"billing": "models/billing_lora"})
    model.adapters["billing"].chat(messages, max_tokens=64)     # the adapter switched on for that generation
    model.chat(messages, max_tokens=64)                           # the base: every adapter off

A generation holds the model's lock with its adapter set (``ChatModel.generating``), so requests for different
adapters never mix: the batcher batches only requests for the same view.
"""

from __future__ import annotations

import copy
from pathlib import Path

from slmops.inference.chat_model import ChatModel


def parse_lora_modules(specs: list[str]) -> dict[str, str]:
    """``["a=path", "b=path"]`` as ``{"a": "path", "b": "path"}``; raises ``ValueError`` naming a bad entry."""
    modules: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--lora-modules: {spec!r} is not name=path")
        if name in modules:
            raise ValueError(f"--lora-modules: {name!r} given twice")
        modules[name] = path
    return modules


def with_lora_modules(model: ChatModel, modules: dict[str, str]) -> ChatModel:
    """``model`` (the base, a transformers folder) with each adapter of ``modules`` loaded and a view per name.

    Raises ``ValueError`` for an ONNX form (adapters need the torch model) or an adapter folder that is missing."""
    if not modules:
        return model
    if model.backend != "transformers":
        raise ValueError(f"serve.lora_modules needs a transformers base model; {model.path} is {model.backend}")
    from peft import PeftModel

    for name, path in modules.items():
        if not (Path(path) / "adapter_config.json").exists():
            raise ValueError(f"serve.lora_modules.{name}: no adapter_config.json in {path}")
    (first, first_path), *rest = modules.items()
    peft_model = PeftModel.from_pretrained(model.model, first_path, adapter_name=first).eval()
    for name, path in rest:
        peft_model.load_adapter(path, adapter_name=name)
    model.model = peft_model
    model.adapters = {name: _view(model, name) for name in modules}
    return model


def _view(model: ChatModel, adapter: str) -> ChatModel:
    view = copy.copy(model)  # shares the model, the tokenizer and the lock
    view.adapter, view.adapters = adapter, {}
    return view
