"""The architectures users fine-tune go through finetune (QLoRA) -> merge -> ONNX -> int8 + int4 -> serve.

Each case is a random-init model built from a config with that family's real structure (GQA ratio, tied or
untied embeddings, rope settings, Phi-3's partial rotary / longrope, Gemma-2's soft-capping and sliding
window), shrunk to test size, with the demo's tiny tokenizer. No weights are downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slmops.config import FinetuneConfig, QuantizeConfig
from slmops.tasks import load_task
from tests.projects import TRIAGE

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "max_position_embeddings": 256}

# Published structure, shrunk: heads/kv-heads keep each family's GQA ratio.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Qwen2.5-0.5B: 14 heads / 2 KV heads (7:1), q/k/v biases, tied embeddings, rope theta 1e6.
    "qwen2": {
        "model_type": "qwen2",
        "num_attention_heads": 7,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_size": 112,
        "tie_word_embeddings": True,
        "rope_theta": 1_000_000.0,
        "use_sliding_window": False,
        "rms_norm_eps": 1e-6,
    },
    # Llama-3.x-8B: 32 / 8 (4:1), untied, llama3 rope scaling, theta 5e5.
    "llama": {
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "tie_word_embeddings": False,
        "rope_theta": 500_000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128,
        },
    },
    # Phi-3.5-mini / Phi-4-mini: fused qkv and gate_up projections, untied, partial rotary (Phi-4-mini 0.75).
    "phi3": {
        "model_type": "phi3",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
        "partial_rotary_factor": 0.75,
        "rope_theta": 10_000.0,
    },
    # Gemma-2: head_dim apart from hidden/heads, attention and final logit soft-capping, sliding window on
    # alternate layers, tied embeddings, query_pre_attn_scalar.
    "gemma2": {
        "model_type": "gemma2",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "sliding_window": 64,
        "query_pre_attn_scalar": 32,
        "tie_word_embeddings": True,
    },
    # SmolLM2-135M: a Llama with 9 heads / 3 KV heads (3:1) and tied embeddings.
    "smollm2": {
        "model_type": "llama",
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
        "hidden_size": 96,
        "tie_word_embeddings": True,
        "rope_theta": 100_000.0,
    },
}

task = load_task("ticket_triage", TRIAGE)


def build_model(arch: str, tokenizer_dir: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    spec = SMALL | ARCHITECTURES[arch]
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **spec,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _chat_through_server(model_dir: Path) -> dict:
    import httpx

    from slmops.inference.chat_model import ChatModel
    from slmops.serve.app import BackgroundServer

    messages = task.build_messages("注文した商品が届きません")
    with BackgroundServer.for_model_dir(model_dir, "student") as server:
        body = {"model": "student", "messages": messages, "max_tokens": 8, "temperature": 0}
        response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert ChatModel.load(model_dir).backend == "onnxruntime"
    return response.json()


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_architecture_goes_from_qlora_to_a_served_int4_answer(arch, tiny_models, tmp_path):
    from slmops.export import quantize
    from slmops.train import finetune

    base = build_model(arch, tiny_models["tokenizer"], tmp_path / "base")
    cfg = FinetuneConfig(
        method="qlora",
        lora={"r": 4, "alpha": 8},
        training={"max_steps": 3, "batch_size": 4, "max_length": 96, "logging_steps": 1},
    )
    prepared = tiny_models["prepared"]
    trained = finetune.run(
        cfg,
        train=prepared / "train.jsonl",
        val=None,
        base_model=str(base),
        out_dir=tmp_path / "student",
        task=task,
    )
    assert trained.global_step == 3 and trained.final_train_loss == trained.final_train_loss

    result = quantize.run(
        QuantizeConfig(candidates=["int8", "int4"], int4_block_size=16),
        model_dir=tmp_path / "student",
        out_dir=tmp_path / "onnx",
    )
    assert set(result.candidates) == {"int8", "int4"}
    import onnx

    nodes = onnx.load(str(result.candidates["int4"].dir / "model.onnx")).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("MatMulNBits") > 4 * SMALL["num_hidden_layers"]  # attention + MLP per layer, LM head
    assert not [n.name for n in nodes if n.op_type == "Expand" and "attn" in n.name]  # GQA reads shared KV heads
    assert "GatherBlockQuantized" in ops  # the embedding is 4-bit too
    for form in result.candidates.values():
        answer = _chat_through_server(form.dir)
        choice = answer["choices"][0]
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length") and answer["usage"]["completion_tokens"] >= 1
