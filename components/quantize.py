"""Quantize stage: optimum ONNX export of the fine-tuned model, then ONNX Runtime dynamic int8.

Usage:
    slmops stage quantize --profile demo

Writes ``fp32/`` (the exported graph with KV cache) and ``int8/`` (weights quantized to 8 bits, activations
quantized on the fly), each a folder ONNX Runtime and optimum's ``ORTModelForCausalLM`` load directly, with
the tokenizer and generation config beside the graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from components.config import QuantizeConfig
from components.io import write_manifest


class QuantizeResult(BaseModel):
    fp32_dir: Path
    int8_dir: Path
    fp32_size_mb: float
    int8_size_mb: float


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def export_onnx(model_dir: Path, out_dir: Path) -> Path:
    """Export a transformers causal LM folder to ONNX (with past key values) via optimum."""
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    model = ORTModelForCausalLM.from_pretrained(model_dir, export=True, use_cache=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return out_dir


def quantize_int8(onnx_dir: Path, out_dir: Path, weight_type: str = "int8") -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    for file in onnx_dir.iterdir():  # tokenizer, configs: everything but the graph
        if file.is_file() and not file.name.startswith("model.onnx") and file.name != "manifest.json":
            shutil.copy2(file, out_dir / file.name)
    quantize_dynamic(
        onnx_dir / "model.onnx",
        out_dir / "model.onnx",
        weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
    )
    return out_dir


def run(cfg: QuantizeConfig, *, model_dir: Path, out_dir: Path) -> QuantizeResult:
    fp32 = export_onnx(model_dir, out_dir / "fp32")
    int8 = quantize_int8(fp32, out_dir / "int8", cfg.weight_type)
    result = QuantizeResult(
        fp32_dir=fp32, int8_dir=int8, fp32_size_mb=dir_size_mb(fp32), int8_size_mb=dir_size_mb(int8)
    )
    write_manifest(out_dir, stage="quantize", **result.model_dump(mode="json"))
    return result
