"""Grouped-query attention exported to ONNX reads its shared KV heads (no repeated cache) and answers as torch does.

A random-init Qwen2 model with 4 query heads on 2 KV heads (``tests/tiny_chat.py``); nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

from tests.tiny_chat import build_chat_model


def _attention_expands(folder: Path) -> int:
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    return sum(1 for node in model.graph.node if node.op_type == "Expand" and "self_attn" in node.name)


def test_gqa_export_has_no_repeated_kv_and_matches_torch_with_padding_and_cache(tmp_path):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    from slmops.export.attention import share_kv_heads
    from slmops.export.quantize import export_onnx

    onnx_dir = export_onnx(build_chat_model(tmp_path / "torch", heads=4), tmp_path / "onnx")
    assert _attention_expands(onnx_dir) == 0  # each layer's key and value were repeated 2x before the pass
    assert share_kv_heads(onnx_dir / "model.onnx", heads=4, kv_heads=2) == 0  # nothing left to rewrite

    vocab = AutoModelForCausalLM.from_pretrained(tmp_path / "torch").config.vocab_size
    ids = torch.randint(3, vocab, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding: row 1 is a 6-token prompt
    mask[2, :7] = 0
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "torch").eval()
    exported = ORTModelForCausalLM.from_pretrained(onnx_dir)
    with torch.inference_mode():
        want = reference(input_ids=ids, attention_mask=mask).logits
        got = exported(input_ids=ids, attention_mask=mask).logits
        assert (got - want)[mask.bool()].abs().max().item() < 1e-4  # every real position, every query head
        greedy = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
        torch_tokens = reference.generate(input_ids=ids, attention_mask=mask, **greedy)
        onnx_tokens = exported.generate(input_ids=ids, attention_mask=mask, **greedy)  # decodes with the KV cache
    assert onnx_tokens.tolist() == torch_tokens.tolist()
