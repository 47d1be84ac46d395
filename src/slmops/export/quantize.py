"""Quantize stage: optimum ONNX export of the fine-tuned model, then ONNX Runtime int8 and/or int4.

Usage:
    slmops stage quantize --profile demo

Writes ``fp32/`` (the exported graph with KV cache) and one folder per quantized form, named after it:
``int8/`` (dynamic quantization: weights 8-bit, activations quantized on the fly) and ``int4/`` (weight-only
blockwise 4-bit through ONNX Runtime's MatMulNBits, round-to-nearest, HQQ or k-quant; with rtn the embedding is 4-bit
too, and a tied embedding reads the LM head's 4-bit table instead of keeping a copy) and ``int8_block/`` (the same
at 8 bits, round-to-nearest). Each folder loads directly in ONNX Runtime and optimum's ``ORTModelForCausalLM``,
with the tokenizer and generation config beside the graph.
``genai_int4/`` is ONNX Runtime GenAI's own int4 build of the merged model (``slmops.export.genai``).
``quantize.candidates`` writes several forms; ``choose_candidate`` picks the smallest that passes the gates.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import QuantizeConfig
from slmops.export.genai import GENAI_PRECISIONS, build_genai
from slmops.export.passes import last_position_logits, share_kv_heads
from slmops.io import write_manifest


class QuantizedForm(BaseModel):
    weight_type: str
    dir: Path
    size_mb: float


class QuantizeResult(BaseModel):
    fp32_dir: Path
    fp32_size_mb: float
    # The form named by ``quantize.weight_type`` (kept under these names for the flow; int8 by default).
    int8_dir: Path
    int8_size_mb: float
    candidates: dict[str, QuantizedForm]  # every form written, by weight type


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def export_onnx(model_dir: Path, out_dir: Path) -> Path:
    """Export a transformers causal LM folder to ONNX (with past key values) via optimum; grouped-query attention
    then reads its shared KV heads without repeating them (``passes.share_kv_heads``)."""
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    model = ORTModelForCausalLM.from_pretrained(model_dir, export=True, use_cache=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    heads = config.get("num_attention_heads")
    if heads:
        share_kv_heads(out_dir / "model.onnx", heads, config.get("num_key_value_heads") or heads)
    return out_dir


def _copy_side_files(onnx_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in onnx_dir.iterdir():  # tokenizer, configs: everything but the graph
        if file.is_file() and not file.name.startswith("model.onnx") and file.name != "manifest.json":
            shutil.copy2(file, out_dir / file.name)


def quantize_int8(onnx_dir: Path, out_dir: Path, weight_type: str = "int8", per_channel: bool = True) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _copy_side_files(onnx_dir, out_dir)
    quantize_dynamic(
        onnx_dir / "model.onnx",
        out_dir / "model.onnx",
        weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
        per_channel=per_channel,
    )
    last_position_logits(out_dir / "model.onnx")  # a served form: the LM head only where generation reads it
    return out_dir


def quantize_int4(onnx_dir: Path, out_dir: Path, cfg: QuantizeConfig | None = None, bits: int = 4) -> Path:
    """Weight-only 4-bit (or ``bits=8``: round-to-nearest) MatMul weights (``MatMulNBits``), blockwise along the
    input dimension."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mnb

    cfg = cfg or QuantizeConfig(weight_type="int4")
    algo = _int4_algorithm(cfg, bits)
    _copy_side_files(onnx_dir, out_dir)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(str(onnx_dir / "model.onnx"))
    _fold_transposed_weights(model)
    if cfg.int4_algorithm == "k_quant" and bits == 4:
        _check_k_quant_blocks(model, cfg)
    # A tied embedding is not quantized on its own: its Gather reads the LM head's 4-bit weights (below).
    rtn = cfg.int4_algorithm == "rtn" or bits == 8
    tied = _tied_embedding_gathers(model, cfg) if cfg.int4_embeddings and rtn else {}
    exclude = [*cfg.int4_nodes_to_exclude, *tied]
    # The block size and accuracy level are read from here by k_quant, from ``algo`` by the others.
    quantizer = mnb.MatMulNBitsQuantizer(
        model,
        block_size=cfg.int4_block_size,
        accuracy_level=cfg.int4_accuracy_level,
        nodes_to_exclude=exclude,
        algo_config=algo,
    )
    quantizer.process()
    if _share_tied_embeddings(quantizer.model.model.graph, tied):
        quantizer.model.clean_initializers()  # the fp32 embedding table, now read by nothing
    # Small enough for one file below 2 GB up to a few billion parameters; larger ones keep external data.
    large = sum(f.stat().st_size for f in onnx_dir.glob("model.onnx*")) > 8e9
    quantizer.model.save_model_to_file(str(out_dir / "model.onnx"), use_external_data_format=large)
    last_position_logits(out_dir / "model.onnx")
    return out_dir


def _int4_algorithm(cfg: QuantizeConfig, bits: int = 4):
    """ONNX Runtime's weight-only config for ``cfg.int4_algorithm`` (round-to-nearest for 8 bits)."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mnb

    if bits == 4 and cfg.int4_algorithm == "hqq":
        return mnb.HQQWeightOnlyQuantConfig(block_size=cfg.int4_block_size, bits=4)
    if bits == 4 and cfg.int4_algorithm == "k_quant":  # asymmetric by construction; MatMuls only, fp32 embedding
        return mnb.KQuantWeightOnlyQuantConfig()
    return mnb.DefaultWeightOnlyQuantConfig(
        block_size=cfg.int4_block_size,
        is_symmetric=cfg.int4_symmetric,
        accuracy_level=cfg.int4_accuracy_level,
        bits=bits,
        # The embedding too (GatherBlockQuantized, 4-bit only; at 8 bits a tied one still shares the head's
        # table): at 150k vocab it is a quarter of a 0.5B model.
        op_types_to_quantize=("MatMul", "Gather") if cfg.int4_embeddings and bits == 4 else ("MatMul",),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )


def _check_k_quant_blocks(model, cfg: QuantizeConfig) -> None:
    """ONNX Runtime's k-quant packs two 4-bit zero points per byte across rows, so a weight whose input size is
    an odd number of blocks gets a malformed zero-point table; refuse it here, naming the setting to change."""
    weights = {init.name: init.dims for init in model.graph.initializer}
    odd = {
        node.name: dims[0]
        for node in model.graph.node
        if node.op_type == "MatMul" and node.name not in cfg.int4_nodes_to_exclude
        for dims in [weights.get(node.input[1])]
        if dims is not None and len(dims) == 2 and -(-dims[0] // cfg.int4_block_size) % 2
    }
    if odd:
        name, size = next(iter(odd.items()))
        raise ValueError(
            f"quantize.int4_algorithm k_quant: {len(odd)} MatMul weight(s) have an input size that is an odd number "
            f"of {cfg.int4_block_size}-wide blocks (e.g. {name}: {size}); ONNX Runtime's k-quant cannot pack them. "
            f"Pick a quantize.int4_block_size that splits them evenly, or int4_algorithm rtn or hqq"
        )


def _fold_transposed_weights(model) -> int:
    """Give ``MatMul(x, Transpose(W))`` (a tied LM head reusing the embedding) its own constant ``W.T``.

    MatMulNBits only quantizes a MatMul whose weight is a constant; with tied embeddings the LM head (for
    Qwen2.5-0.5B, 136M of its 494M parameters) would otherwise stay fp32. Returns how many were folded.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    folded = 0
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2:
            continue
        src = producers.get(node.input[1])
        if src is None or src.op_type != "Transpose" or src.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None)
        weight = numpy_helper.to_array(inits[src.input[0]], base_dir="")
        if weight.ndim != 2 or perm not in (None, [1, 0]):
            continue
        name = f"{src.input[0]}_T_folded"  # not "_transposed": exporters already name the Transpose output so
        if name not in inits:
            inits[name] = numpy_helper.from_array(weight.T.copy(), name)
            model.graph.initializer.append(inits[name])
        node.input[1] = name
        folded += 1
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node if n.op_type == "Transpose" and not any(o in used for o in n.output)]
    for node in dead:  # so the fp32 original is dropped once the embedding's Gather is quantized too
        model.graph.node.remove(node)
    return folded


def _tied_embedding_gathers(model, cfg: QuantizeConfig) -> dict[str, str]:
    """Embedding Gathers whose table a MatMul reuses, transposed, as its LM-head weight: Gather name -> MatMul output.

    Only where the LM head will become MatMulNBits (not excluded) with whole blocks along the hidden size, so its
    4-bit rows can serve the Gather as they are. Unnamed Gathers are given a name (``nodes_to_exclude`` needs one).
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    heads: dict[tuple[int, ...], list] = {}  # constant MatMul weights by shape
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and node.name not in cfg.int4_nodes_to_exclude:
            heads.setdefault(tuple(inits[node.input[1]].dims), []).append(node)
    tied: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table is None or len(table.dims) != 2 or axis != 0 or table.dims[1] % cfg.int4_block_size:
            continue
        candidates = heads.get((table.dims[1], table.dims[0]), [])
        if not candidates:
            continue
        embedding = numpy_helper.to_array(table, base_dir="")
        for head in candidates:
            if np.array_equal(numpy_helper.to_array(inits[head.input[1]], base_dir=""), embedding.T):
                node.name = node.name or f"tied_embedding_gather_{index}"
                tied[node.name] = head.output[0]
                break
    return tied


def _share_tied_embeddings(graph, tied: Mapping[str, str]) -> int:
    """Replace each tied Gather by ``GatherBlockQuantized`` over the LM head's MatMulNBits weights.

    MatMulNBits stores the head as ``[vocab, blocks, block_size / 2]`` uint8 (4-bit pairs, low nibble first) with
    scales ``[vocab, blocks]`` and, when asymmetric, packed zero points ``[vocab, ceil(blocks / 2)]``: seen as
    ``[vocab, hidden / 2]``, that is GatherBlockQuantized's uint8 layout (``bits=4``, ``quantize_axis=1``), so one
    4-bit table serves both ends of the model (for Qwen2.5-0.5B, 136M of its 494M parameters stored once).
    Returns how many Gathers were replaced; a Gather whose head did not become MatMulNBits stays as it was.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    nodes, shared = [], 0
    for node in graph.node:
        head = producers.get(tied.get(node.name, ""))
        if head is None or head.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        weight, scales, *zero_points = head.input[1:]
        attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
        vocab, blocks, blob = inits[weight].dims
        shape = f"{weight}_rows_shape"
        if shape not in inits:
            inits[shape] = numpy_helper.from_array(np.array([vocab, blocks * blob], dtype=np.int64), shape)
            graph.initializer.append(inits[shape])
        rows = f"{weight}_rows"
        nodes.append(helper.make_node("Reshape", [weight, shape], [rows], name=f"{node.name}_rows"))
        nodes.append(
            helper.make_node(
                "GatherBlockQuantized",
                [rows, node.input[1], scales, *zero_points[:1]],
                list(node.output),
                name=f"{node.name}_Q4_shared",
                domain="com.microsoft",
                gather_axis=0,
                quantize_axis=1,
                block_size=attrs["block_size"],
                bits=attrs["bits"],
            )
        )
        shared += 1
    if shared:
        graph.ClearField("node")
        graph.node.extend(nodes)
    return shared


def quantize_form(onnx_dir: Path, out_dir: Path, weight_type: str, cfg: QuantizeConfig, model_dir: Path) -> Path:
    """Write one form: from the ONNX export (int8, uint8, int8_block, int4) or, for a GenAI form, from ``model_dir``."""
    if weight_type in GENAI_PRECISIONS:
        return build_genai(model_dir, out_dir, GENAI_PRECISIONS[weight_type], cfg.int4_block_size)
    if weight_type in ("int4", "int8_block"):
        return quantize_int4(onnx_dir, out_dir, cfg, bits=4 if weight_type == "int4" else 8)
    return quantize_int8(onnx_dir, out_dir, weight_type, cfg.int8_per_channel)


def run(cfg: QuantizeConfig, *, model_dir: Path, out_dir: Path) -> QuantizeResult:
    fp32 = export_onnx(model_dir, out_dir / "fp32")
    forms = {}
    for weight_type in dict.fromkeys([*cfg.forms, cfg.weight_type]):
        folder = quantize_form(fp32, out_dir / weight_type, weight_type, cfg, model_dir)
        forms[weight_type] = QuantizedForm(weight_type=weight_type, dir=folder, size_mb=dir_size_mb(folder))
    main = forms[cfg.weight_type]
    result = QuantizeResult(
        fp32_dir=fp32, fp32_size_mb=dir_size_mb(fp32), int8_dir=main.dir, int8_size_mb=main.size_mb, candidates=forms
    )
    write_manifest(out_dir, stage="quantize", **result.model_dump(mode="json"))
    return result


def choose_candidate(
    metrics_by_candidate: Mapping[str, dict[str, Any]],
    sizes: Mapping[str, float],
    gate_fn: Callable[[dict[str, Any]], bool],
) -> str | None:
    """The smallest candidate whose metrics pass ``gate_fn`` (ties: the first given), or None if none passes."""
    passing = [name for name, metrics in metrics_by_candidate.items() if gate_fn(metrics)]
    return min(passing, key=lambda name: sizes[name]) if passing else None
