"""int4 of a tied-embedding model stores its vocabulary table once, 4-bit, for both the embedding and the LM head.

Random-init Qwen2-style models (tied and untied embeddings), exported to ONNX with KV cache; no weights downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slmops.config import QuantizeConfig

VOCAB, HIDDEN = 1000, 96  # hidden 96 at block 32: three blocks a row, so zero points pack with a half-empty byte


def _export(tmp_path: Path, tied: bool) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from slmops.export.quantize import export_onnx

    config = AutoConfig.for_model(
        "qwen2",
        hidden_size=HIDDEN,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        tie_word_embeddings=tied,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "torch")
    _tokenizer_stub(tmp_path / "torch")
    return export_onnx(tmp_path / "torch", tmp_path / "fp32")


def _tokenizer_stub(folder: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(VOCAB)}
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t1")))
    fast.save_pretrained(folder)


def _vocab_tables(model) -> dict[str, tuple[str, list[int]]]:
    """Initializers with a vocabulary-sized dimension: name -> (type, dims)."""
    from onnx import TensorProto

    return {
        i.name: (TensorProto.DataType.Name(i.data_type), list(i.dims))
        for i in model.graph.initializer
        if VOCAB in i.dims
    }


def _greedy(folder: Path, ids) -> tuple:
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(folder)
    with torch.inference_mode():  # position p's logits: the last of prefix p (served forms compute only the last)
        prefixes = [ids[:, : n + 1] for n in range(ids.shape[1])]
        logits = torch.stack([model(input_ids=p, attention_mask=torch.ones_like(p)).logits[:, -1] for p in prefixes], 1)
        out = model.generate(input_ids=ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    return logits, out


def _assert_generates_close_to(fp32: Path, out: Path) -> None:
    """The 4-bit model generates with its KV cache, and its logits differ from fp32's, but not wildly."""
    import torch

    ids = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    ref_logits, _ = _greedy(fp32, ids)
    logits, generated = _greedy(out, ids)  # runs with the KV cache
    assert generated.shape == (2, 18)
    error = (logits - ref_logits).abs().max().item()
    assert 0 < error < 0.25 * ref_logits.abs().max().item()  # 4-bit, not a broken table


@pytest.mark.slow
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_tied_embedding_is_one_4bit_table_shared_with_the_lm_head(tmp_path, symmetric):
    import onnx

    from slmops.export.quantize import quantize_int4

    fp32 = _export(tmp_path, tied=True)
    out = quantize_int4(fp32, tmp_path / "int4", QuantizeConfig(int4_block_size=32, int4_symmetric=symmetric))

    model = onnx.load(str(out / "model.onnx"))
    tables = _vocab_tables(model)
    assert not [n for n, (kind, _) in tables.items() if kind == "FLOAT" and HIDDEN in tables[n][1]], tables
    weights = [n for n, (kind, dims) in tables.items() if kind == "UINT8" and len(dims) == 3]
    assert len(weights) == 1, tables  # the head's MatMulNBits weight, and no second 4-bit copy for the Gather
    gathers = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(gathers) == 1 and gathers[0].input[0] == f"{weights[0]}_rows"
    assert (len(gathers[0].input) == 4) is not symmetric  # asymmetric: the head's zero points too

    _assert_generates_close_to(fp32, out)


@pytest.mark.slow
def test_k_quant_refuses_an_odd_block_count_naming_the_block_size(tmp_path):
    from slmops.export.quantize import quantize_int4

    fp32 = _export(tmp_path, tied=True)
    cfg = QuantizeConfig(int4_block_size=32, int4_algorithm="k_quant")  # hidden 96: three blocks a row
    with pytest.raises(ValueError, match=r"int4_block_size.*or int4_algorithm rtn or hqq"):
        quantize_int4(fp32, tmp_path / "int4", cfg)
    assert not (tmp_path / "int4" / "model.onnx").exists()


@pytest.mark.slow
def test_int4_untied_embedding_keeps_its_own_4bit_table(tmp_path):
    import onnx

    from slmops.export.quantize import quantize_int4

    out = quantize_int4(_export(tmp_path, tied=False), tmp_path / "int4", QuantizeConfig(int4_block_size=32))
    model = onnx.load(str(out / "model.onnx"))
    gathers = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(gathers) == 1 and not gathers[0].name.endswith("_shared")
    kinds = sorted(kind for kind, dims in _vocab_tables(model).values() if HIDDEN in dims or len(dims) == 3)
    assert kinds == ["INT4", "UINT8"]  # the embedding (GatherBlockQuantized) and the head (MatMulNBits)


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "block"), [("hqq", 32), ("k_quant", 16)])  # k_quant: an even count a row
def test_int4_algorithms_write_every_matmul_as_4bit_blocks_of_the_configured_size(tmp_path, algorithm, block):
    import onnx
    from onnx import helper

    from slmops.export.quantize import quantize_int4

    fp32 = _export(tmp_path, tied=True)
    matmuls = sum(n.op_type == "MatMul" for n in onnx.load(str(fp32 / "model.onnx")).graph.node)
    cfg = QuantizeConfig(int4_block_size=block, int4_algorithm=algorithm)
    out = quantize_int4(fp32, tmp_path / "int4", cfg)

    nodes = onnx.load(str(out / "model.onnx")).graph.node
    nbits = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in nodes if n.op_type == "MatMulNBits"]
    assert len(nbits) >= 2 * 7 + 1  # 2 layers x (q, k, v, o, gate, up, down) + the tied LM head, folded
    assert {(a["bits"], a["block_size"]) for a in nbits} == {(4, block)}
    assert sum(n.op_type == "MatMul" for n in nodes) < matmuls  # the rest multiply activations, not weights

    _assert_generates_close_to(fp32, out)


def test_int4_algorithm_is_one_ort_offers():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="int4_algorithm"):
        QuantizeConfig(int4_algorithm="gptq")


@pytest.mark.slow
def test_int8_scales_each_output_column_unless_told_per_tensor(tmp_path):
    """int8 keeps one scale per output column of every MatMul weight (``quantize.int8_per_channel``, the default):
    its logits stay closer to fp32's than one scale per weight tensor."""
    import onnx
    import torch

    from slmops.export.quantize import quantize_int8

    fp32 = _export(tmp_path, tied=False)
    ids = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    ref, _ = _greedy(fp32, ids)
    errors = {}
    for per_channel in (True, False):
        out = quantize_int8(fp32, tmp_path / f"int8-{per_channel}", per_channel=per_channel)
        graph = onnx.load(str(out / "model.onnx")).graph
        scales = [list(i.dims) for i in graph.initializer if i.name.endswith("_scale") and "MatMul" in i.name]
        assert len(scales) == 2 * 7 + 1  # 2 layers x (q, k, v, o, gate, up, down) + the LM head
        assert ([VOCAB] in scales) is per_channel and all(d in ([], [1]) for d in scales) is not per_channel, scales
        logits, _ = _greedy(out, ids)
        errors[per_channel] = (logits - ref).abs().mean().item()
    assert 0 < errors[True] < errors[False], errors


@pytest.mark.slow
def test_int8_block_is_8bit_matmulnbits_and_closer_to_fp32_than_int4(tmp_path):
    """int8_block writes every weight MatMul (and the tied embedding, sharing the head's table) as 8-bit blocks
    with int8 compute, and its logits sit closer to fp32's than int4's do."""
    import onnx
    import torch
    from onnx import helper

    from slmops.export.quantize import quantize_form

    fp32 = _export(tmp_path, tied=True)
    cfg = QuantizeConfig(int4_block_size=32)
    ids = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    ref, _ = _greedy(fp32, ids)
    errors = {}
    for form in ("int8_block", "int4"):
        out = quantize_form(fp32, tmp_path / form, form, cfg, tmp_path / "torch")
        nodes = onnx.load(str(out / "model.onnx")).graph.node
        nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
        attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in nbits]
        assert len(attrs) == 2 * 7 + 1 and {(a["bits"], a["accuracy_level"]) for a in attrs} == {(int(form[3]), 4)}
        assert [n.name for n in nodes if n.op_type == "GatherBlockQuantized"][0].endswith("_shared")
        logits, generated = _greedy(out, ids)
        assert generated.shape == (2, 18)
        errors[form] = (logits - ref).abs().mean().item()
    assert 0 < errors["int8_block"] < errors["int4"] / 4, errors
