"""The graph passes on an exported decoder (``export/passes.py``) keep its answers: grouped-query attention reads
its shared KV heads (no repeated cache), and served forms compute the LM head at the last position only.

A random-init Qwen2 model with 4 query heads on 2 KV heads (``tests/tiny_chat.py``); nothing downloaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tiny_chat import build_chat_model


def _attention_expands(folder: Path) -> int:
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    return sum(1 for node in model.graph.node if node.op_type == "Expand" and "self_attn" in node.name)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(the transformers folder, its ONNX export)."""
    from slmops.export.quantize import export_onnx

    root = tmp_path_factory.mktemp("passes")
    torch_dir = build_chat_model(root / "torch", heads=4)
    return torch_dir, export_onnx(torch_dir, root / "onnx")


def _batch():
    """Three prompts of 10, 6 and 3 tokens, left-padded."""
    import torch

    ids = torch.randint(3, 300, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :7] = 0
    return ids, mask


GREEDY = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "pad_token_id": 0}


def test_gqa_export_has_no_repeated_kv_and_matches_torch_with_padding_and_cache(exported):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    from slmops.export.passes import share_kv_heads

    torch_dir, onnx_dir = exported
    assert _attention_expands(onnx_dir) == 0  # each layer's key and value were repeated 2x before the pass
    assert share_kv_heads(onnx_dir / "model.onnx", heads=4, kv_heads=2) == 0  # nothing left to rewrite
    ids, mask = _batch()
    reference = AutoModelForCausalLM.from_pretrained(torch_dir).eval()
    exported_model = ORTModelForCausalLM.from_pretrained(onnx_dir)
    with torch.inference_mode():
        want = reference(input_ids=ids, attention_mask=mask).logits
        got = exported_model(input_ids=ids, attention_mask=mask).logits
        assert (got - want)[mask.bool()].abs().max().item() < 1e-4  # every real position, every query head
        torch_tokens = reference.generate(input_ids=ids, attention_mask=mask, **GREEDY)
        onnx_tokens = exported_model.generate(input_ids=ids, attention_mask=mask, **GREEDY)  # with the KV cache
    assert onnx_tokens.tolist() == torch_tokens.tolist()


def test_last_position_logits_are_the_full_graphs_last_and_quantized_forms_have_only_them(exported, tmp_path):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    from slmops.config import QuantizeConfig
    from slmops.export.passes import last_position_logits
    from slmops.export.quantize import quantize_int4

    torch_dir, onnx_dir = exported
    sliced_dir = Path(shutil.copytree(onnx_dir, tmp_path / "sliced"))
    assert last_position_logits(sliced_dir / "model.onnx")
    assert not last_position_logits(sliced_dir / "model.onnx")  # once is enough
    ids, mask = _batch()
    full, sliced = (ORTModelForCausalLM.from_pretrained(d) for d in (onnx_dir, sliced_dir))
    with torch.inference_mode():
        want = full(input_ids=ids, attention_mask=mask).logits
        got = sliced(input_ids=ids, attention_mask=mask).logits
        assert want.shape[1] == 10 and got.shape[1] == 1  # the fp32 export keeps every position (parity reads them)
        assert torch.allclose(got[:, 0], want[:, -1], atol=1e-5)
        assert (
            sliced.generate(input_ids=ids, attention_mask=mask, **GREEDY).tolist()
            == full.generate(input_ids=ids, attention_mask=mask, **GREEDY).tolist()
        )
        int4 = ORTModelForCausalLM.from_pretrained(quantize_int4(onnx_dir, tmp_path / "int4", QuantizeConfig()))
        assert int4(input_ids=ids, attention_mask=mask).logits.shape[1] == 1


def test_an_untied_dynamic_int8_head_is_sliced_before_its_activations_are_quantized(exported, tmp_path):
    """Dynamic int8 quantizes an untied LM head (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul): the
    slice goes before the quantizer, and the last-position logits stay close to fp32's."""
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmops.export.quantize import export_onnx, quantize_int8

    torch_dir, _ = exported
    model = AutoModelForCausalLM.from_pretrained(torch_dir)
    model.config.tie_word_embeddings = False
    torch.manual_seed(2)
    head = model.lm_head.weight.detach()
    model.lm_head.weight = torch.nn.Parameter(head + 0.05 * torch.randn_like(head))
    model.save_pretrained(tmp_path / "untied")
    AutoTokenizer.from_pretrained(torch_dir).save_pretrained(tmp_path / "untied")
    fp32_dir = export_onnx(tmp_path / "untied", tmp_path / "fp32")
    int8_dir = quantize_int8(fp32_dir, tmp_path / "int8")
    ids, mask = _batch()
    with torch.inference_mode():
        want = ORTModelForCausalLM.from_pretrained(fp32_dir)(input_ids=ids, attention_mask=mask).logits[:, -1]
        got = ORTModelForCausalLM.from_pretrained(int8_dir)(input_ids=ids, attention_mask=mask).logits
    assert got.shape[1] == 1
    assert (got[:, 0] - want).abs().max().item() < 0.1 * want.abs().max().item()  # int8, not a broken head
