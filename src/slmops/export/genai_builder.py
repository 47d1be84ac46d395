"""Run ONNX Runtime GenAI's model builder on the transformers release this project pins.

Usage (what ``slmops.export.genai.build_genai`` runs, in a child process):
    python -m slmops.export.genai_builder -m <hf folder> -i <hf folder> -o <out> -p int4 -e cpu -c <cache>

onnxruntime-genai 0.18's builder is written against transformers 5 and fails to import on 4.57 (the pinned
release) for two reasons, both patched here and nowhere else, in this child process only:
- it imports vision-language classes 4.57 lacks (``Qwen3_5ForConditionalGeneration``, …); they are stubbed
  (the builder only uses them for those architectures, never for the causal LMs we export);
- it reads ``config.rope_scaling`` as a dict (transformers 5's ``rope_parameters``), where 4.57 leaves
  ``None`` for plain RoPE; ``None`` becomes ``{"rope_type": "default"}``, which is what it means.
The hub is never asked: the input folder is passed as ``-i`` and ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import runpy
import sys

MISSING_IN_TRANSFORMERS_4 = (
    "Gemma3ForConditionalGeneration",
    "Lfm2VlForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
)


def stub_missing_classes() -> list[str]:
    """Give ``transformers`` a placeholder for each class the builder imports that it lacks; returns their names."""
    import transformers  # noqa: F401  (a lazy module that may replace itself in sys.modules on first access)

    stubbed = []
    for name in MISSING_IN_TRANSFORMERS_4:
        try:
            getattr(sys.modules["transformers"], name)
        except (AttributeError, ImportError):
            setattr(sys.modules["transformers"], name, type(name, (), {}))
            stubbed.append(name)
    return stubbed


def patch_plain_rope() -> None:
    """Read transformers 4's ``rope_scaling=None`` (plain RoPE) as transformers 5's ``{"rope_type": "default"}``."""
    from builders.base import Model  # the builder's own package, on sys.path once onnxruntime_genai.models is

    original = Model.make_config_init

    def make_config_init(self, config):
        if getattr(config, "rope_scaling", "absent") is None:
            config.rope_scaling = {"rope_type": "default"}
        return original(self, config)

    Model.make_config_init = make_config_init


def main(argv: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import onnxruntime_genai.models  # noqa: F401  (puts the builder's folder on sys.path)

    stub_missing_classes()
    patch_plain_rope()
    sys.argv = ["onnxruntime_genai.models.builder", *argv]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
