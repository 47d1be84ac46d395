"""A merged Qwen2 folder (safetensors + a byte-level BPE tokenizer.json) as an F16 GGUF that llama.cpp serves
as a chat model: llama.cpp's tensor names, the real vocabulary, merges, special tokens and chat template.

Usage (needs the ``engine`` extra: ``pip install 'slmops[engine]'``):
    write_gguf(Path("models/student_merged"), Path("models/student.f16.gguf"))
    python -m llama_cpp.server --model models/student.f16.gguf --model_alias student

Written with the ``gguf`` package (llama.cpp's converter script ships in neither wheel). Qwen2 only: Llama's
q/k weights need llama.cpp's rotary permutation. The tokenizer must be a byte-level BPE with GPT-2's
pre-tokenizer (the demo's and Qwen2's family), so llama.cpp tokenizes the prompt as transformers does.
"""

from __future__ import annotations

import json
from pathlib import Path

CONTROL, NORMAL, UNUSED = 3, 1, 5  # llama.cpp's token types


def write_gguf(model_dir: Path, path: Path) -> Path:
    """``model_dir`` as an F16 GGUF at ``path`` (1-D norms and biases F32, as llama.cpp's converter writes)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config["model_type"] != "qwen2":
        raise NotImplementedError(f"GGUF export writes qwen2 models; {model_dir} is {config['model_type']}")
    arch, layers = gguf.MODEL_ARCH.QWEN2, config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(arch, layers)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_tokenizer(writer, model_dir, config["vocab_size"])
    for file in sorted(model_dir.glob("*.safetensors")):
        for name, tensor in load_file(file).items():
            if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                continue
            target = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise ValueError(f"no GGUF name for tensor {name}")
            writer.add_tensor(target, tensor.astype(np.float16 if tensor.ndim > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def add_tokenizer(writer, model_dir: Path, vocab_size: int) -> None:
    """The folder's byte-level BPE as llama.cpp's ``gpt2`` tokenizer, padded to the embedding's ``vocab_size``."""
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    settings = json.loads((model_dir / "tokenizer_config.json").read_text())
    if spec["model"]["type"] != "BPE":
        raise NotImplementedError(f"GGUF export writes byte-level BPE tokenizers; {model_dir} has another")
    by_id = {i: token for token, i in spec["model"]["vocab"].items()}
    special = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
    by_id |= special
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)]
    types = [CONTROL if i in special else NORMAL if i in by_id else UNUSED for i in range(vocab_size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    ids = {token: i for i, token in enumerate(tokens)}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_add_bos_token(False)
    for role, add in (("eos", writer.add_eos_token_id), ("bos", writer.add_bos_token_id)):
        token = settings.get(f"{role}_token")
        if token in ids:
            add(ids[token])
    if settings.get("pad_token") in ids:
        writer.add_pad_token_id(ids[settings["pad_token"]])
    template = settings.get("chat_template")
    if template is None and (model_dir / "chat_template.jinja").exists():
        template = (model_dir / "chat_template.jinja").read_text()
    if template:
        writer.add_chat_template(template)
