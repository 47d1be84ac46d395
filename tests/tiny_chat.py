"""A tiny random-init Qwen2 chat model with a byte-level BPE tokenizer of its own (ChatML template), in seconds:
what the engine and multi-LoRA tests serve. Untrained, but a real model folder that transformers, peft and
(through ``slmops.export.gguf``) llama.cpp all load.

Usage:
    folder = build_chat_model(tmp_path / "base")
    adapter = random_lora(folder, tmp_path / "lora_a", seed=1)
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "注文した商品が届きません。配送状況を教えてください。",
    "請求額が間違っています。返金をお願いします。",
    "The parcel never arrived; please check the delivery.",
    "Refund the wrong charge on my invoice, please.",
    '{"category": "shipping", "priority": "high"}',
] * 20
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_chat_model(out: Path, seed: int = 0, heads: int = 4) -> Path:
    """``heads`` attention heads over a 64-wide model (and half as many key/value heads): 2 gives head_dim 32, the
    least vLLM's CPU attention supports."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=384, show_progress=False, special_tokens=specials, initial_alphabet=alphabet
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<|pad|>", bos_token="<|im_start|>", eos_token="<|im_end|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=128,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.1,  # wider than 0.02: an untrained model's greedy picks are then clear-cut, not near-ties
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_lora(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on ``base`` with random A and B (peft's default B=0 would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    return out


def merged(base: Path, adapter: Path, out: Path) -> Path:
    """``base`` with ``adapter`` merged in, saved as a plain transformers folder (with the tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out
