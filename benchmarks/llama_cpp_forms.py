"""llama.cpp anchor for benchmarks/real_size.py: the same random-init model as GGUF Q8_0 and Q4_K_M.

Usage (called by real_size; optional, needs ``pip install llama-cpp-python gguf``, not a project dependency):
    .venv/bin/python -m benchmarks.real_size --forms gguf_q8_0 gguf_q4_k_m --train

The torch folder is written to an F16 GGUF with the ``gguf`` package (llama.cpp's own tensor names and metadata
for the architecture), then quantized by llama.cpp itself (``llama_model_quantize``, what ``llama-quantize``
runs). llama.cpp's converter script is not shipped in either wheel, and it would need the model's real
tokenizer; the benchmark feeds token ids, so the GGUF carries a placeholder vocabulary of the right size.
Only Qwen2/Llama-style models (the shapes real_size builds) are written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

GGUF_FORMS = {"gguf_q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "gguf_q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
MISSING = "llama.cpp forms skipped: llama_cpp / gguf not installed (pip install llama-cpp-python gguf)"


def available() -> bool:
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def write_f16_gguf(torch_dir: Path, path: Path) -> Path:
    """The safetensors folder as an F16 GGUF (1-D norms and biases F32, as llama.cpp's converter writes them)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((torch_dir / "config.json").read_text())
    arch = {"qwen2": gguf.MODEL_ARCH.QWEN2, "llama": gguf.MODEL_ARCH.LLAMA}[config["model_type"]]
    layers = config["num_hidden_layers"]
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
    _placeholder_vocab(writer, config)
    for file in sorted(torch_dir.glob("*.safetensors")):
        for name, tensor in load_file(file).items():
            if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                continue
            if arch == gguf.MODEL_ARCH.LLAMA and name.endswith(("q_proj.weight", "k_proj.weight")):
                raise NotImplementedError("llama q/k need llama.cpp's rotary permutation; only qwen2 is written")
            target = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise ValueError(f"no GGUF name for tensor {name}")
            writer.add_tensor(target, tensor.astype(np.float16 if tensor.ndim > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _placeholder_vocab(writer, config: dict) -> None:
    """A byte-level BPE vocabulary of the model's size: the 256 byte tokens, then ``<tN>`` placeholders."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    byte_tokens = list(bytes_to_unicode().values())
    tokens = byte_tokens + [f"<t{i}>" for i in range(len(byte_tokens), config["vocab_size"])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(config.get("bos_token_id") or 0)
    writer.add_eos_token_id(config.get("eos_token_id") or 0)


def quantize(f16: Path, out: Path, form: str, threads: int = 2) -> Path:
    """llama.cpp's own quantizer (``llama-quantize``) from the F16 file."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_FORMS[form])
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {form} failed with {rc}")
    return out


def build(work: Path) -> None:
    torch_dir = work / "torch_fp32"
    f16 = work / "gguf" / "model-f16.gguf"
    if not all((work / form / "model.gguf").exists() for form in GGUF_FORMS):
        f16.parent.mkdir(parents=True, exist_ok=True)
        if not f16.exists():
            write_f16_gguf(torch_dir, f16)
        for form in GGUF_FORMS:
            (work / form).mkdir(exist_ok=True)
            if not (work / form / "model.gguf").exists():
                quantize(f16, work / form / "model.gguf", form)
        f16.unlink()  # 1 GB at 0.5B: not measured itself


def measure(form: str, work: Path, prompt_tokens: int, new_tokens: int, peak_rss_mb) -> dict:
    """Load, time to first token and greedy decode tokens/s at batch 1 (EOS ignored: ``generate`` never stops)."""
    import random

    from llama_cpp import Llama

    path = work / form / "model.gguf"
    started = time.perf_counter()
    llm = Llama(str(path), n_ctx=prompt_tokens + new_tokens + 8, n_batch=prompt_tokens, n_threads=2, verbose=False)
    load_s = time.perf_counter() - started
    rng = random.Random(1)

    def run(count: int) -> tuple[float, float]:
        prompt = [rng.randrange(10, min(llm.n_vocab(), 30000)) for _ in range(prompt_tokens)]
        started = time.perf_counter()
        first = None
        for index, _ in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True)):
            first = first or time.perf_counter()
            if index + 1 == count:
                break
        return first - started, time.perf_counter() - first

    run(2)  # warm-up
    ttft = min(run(1)[0] for _ in range(2))
    _, decode = run(new_tokens)
    size_mb = path.stat().st_size / 1e6
    return {
        "form": form,
        "size_mb": size_mb,
        "load_s": load_s,
        "ttft_ms": ttft * 1000,
        "decode_tok_s_b1": (new_tokens - 1) / max(decode, 1e-9),
        "decode_tok_s_b8": None,  # llama-cpp-python's Llama decodes one sequence
        "peak_rss_mb": peak_rss_mb(),
    }
