"""Real-size forms side by side: a random-init model with Qwen2.5-0.5B's exact shapes, on this machine.

Usage:
    .venv/bin/python -m benchmarks.real_size [--work-dir /tmp/real_size] [--new-tokens 32] [--shape qwen2.5-0.5b]

Builds the model from Qwen2.5-0.5B's published config values (no weights are downloaded), exports it to ONNX
(KV cache), quantizes int8 (dynamic) and int4 (MatMulNBits, block 32 and 128; a tied embedding shares the LM
head's 4-bit table), and, when llama-cpp-python and gguf are installed (optional), writes llama.cpp's GGUF Q8_0
and Q4_K_M of the same model (benchmarks/llama_cpp_forms.py). Then it measures each form in
its own subprocess so peak RSS is per form: file size, load time, time to first token (prompt of
``--prompt-tokens``), decode tokens/s at batch 1 and batch 8 (EOS ignored: every form generates exactly
``--new-tokens``), peak RSS. Then one QLoRA, LoRA and full fine-tuning step each: time and peak RSS.
Prints a markdown table. Figures vary with the machine and its load: compare the ratios. Peak RSS includes
the interpreter with torch, transformers and ONNX Runtime imported (about 0.6 GB before any model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import llama_cpp_forms

SHAPES = {
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json (values copied, nothing downloaded)
    "qwen2.5-0.5b": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1_000_000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
    },
    "tiny": {  # a smoke check of this script itself
        "model_type": "qwen2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1024,
        "tie_word_embeddings": True,
        "eos_token_id": 0,
    },
}
FORMS = ("torch_fp32", "onnx_fp32", "int8", "int4_b32", "int4_b128")
GGUF_FORMS = ("gguf_q8_0", "gguf_q4_k_m")  # llama.cpp, when llama_cpp and gguf are installed
TRAIN_METHODS = ("qlora", "lora", "full")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which a child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(shape: str, work: Path, gguf: bool = False) -> None:
    """The random-init model, its ONNX export and the quantized forms (each step skipped when present)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from slmops.config import QuantizeConfig
    from slmops.export.quantize import quantize_int4, quantize_int8

    spec = dict(SHAPES[shape])
    torch_dir = work / "torch_fp32"
    if not (torch_dir / "config.json").exists():
        torch.manual_seed(0)
        config = AutoConfig.for_model(spec.pop("model_type"), **spec)
        AutoModelForCausalLM.from_config(config).save_pretrained(torch_dir)
    if not (work / "onnx_fp32" / "model.onnx").exists():
        _run_child("export", work)
    if not (work / "int8" / "model.onnx").exists():
        quantize_int8(work / "onnx_fp32", work / "int8")
    for block in (32, 128):
        if not (work / f"int4_b{block}" / "model.onnx").exists():
            quantize_int4(work / "onnx_fp32", work / f"int4_b{block}", QuantizeConfig(int4_block_size=block))
    if gguf and not all((work / form / "model.gguf").exists() for form in GGUF_FORMS):
        _run_child("gguf", work)


def export(work: Path) -> None:
    from optimum.onnxruntime import ORTModelForCausalLM

    ORTModelForCausalLM.from_pretrained(work / "torch_fp32", export=True, use_cache=True).save_pretrained(
        work / "onnx_fp32"
    )


def _load(form: str, work: Path):
    folder = work / form
    if form == "torch_fp32":
        import torch
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    from optimum.onnxruntime import ORTModelForCausalLM

    from slmops.inference.chat_model import fix_cache_shapes

    model = ORTModelForCausalLM.from_pretrained(folder)
    fix_cache_shapes(model)
    return model


def _generate(model, batch: int, prompt_tokens: int, new_tokens: int, vocab: int) -> float:
    import torch

    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(10, min(vocab, 30000), (batch, prompt_tokens), generator=g)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # EOS ignored: every form generates the same number of tokens
            do_sample=False,
            pad_token_id=0,
        )
    assert out.shape[1] == prompt_tokens + new_tokens
    return time.perf_counter() - started


def measure(form: str, work: Path, prompt_tokens: int, new_tokens: int) -> dict:
    import optimum.onnxruntime  # noqa: F401  (imports are not load time)
    import transformers  # noqa: F401

    from slmops.export.quantize import dir_size_mb

    started = time.perf_counter()
    model = _load(form, work)
    load_s = time.perf_counter() - started
    vocab = model.config.vocab_size
    _generate(model, 1, 8, 2, vocab)  # warm-up
    ttft = min(_generate(model, 1, prompt_tokens, 1, vocab) for _ in range(2))
    row = {"form": form, "size_mb": dir_size_mb(work / form), "load_s": load_s, "ttft_ms": ttft * 1000}
    for batch in (1, 8):
        ttft_b = _generate(model, batch, prompt_tokens, 1, vocab) if batch > 1 else ttft
        total = _generate(model, batch, prompt_tokens, new_tokens, vocab)
        row[f"decode_tok_s_b{batch}"] = batch * (new_tokens - 1) / max(total - ttft_b, 1e-9)
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def train_step(method: str, work: Path, seq: int = 128) -> dict:
    """One optimizer step at batch 1 x ``seq`` tokens (after one warm-up step): time and peak RSS."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slmops.config import FinetuneConfig
    from slmops.train.base import load_base

    base = str(work / "torch_fp32")
    model = (
        load_base(FinetuneConfig(method="qlora"), base)
        if method == "qlora"
        else AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    )
    if method != "full":
        lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95))
    vocab = min(model.config.vocab_size, 30000)
    ids = torch.randint(10, vocab, (1, seq), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(2):
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    trainable = sum(p.numel() for p in params)
    return {
        "form": f"train_{method}",
        "step_s": times[-1],
        "trainable_m": trainable / 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


def _run_child(what: str, work: Path, *extra: str) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.real_size", "--child", what, "--work-dir", str(work), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{what} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["form"] == "torch_fp32"), None)
    out = [
        "| form | size MB | x smaller | load s | TTFT ms | decode tok/s b1 | x faster b1 | decode tok/s b8 "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in rows if "size_mb" in r):
        smaller = base["size_mb"] / r["size_mb"] if base else float("nan")
        faster = r["decode_tok_s_b1"] / base["decode_tok_s_b1"] if base else float("nan")
        out.append(
            f"| {r['form']} | {r['size_mb']:.0f} | {smaller:.2f} | {r['load_s']:.1f} | {r['ttft_ms']:.0f} | "
            f"{r['decode_tok_s_b1']:.1f} | {faster:.2f} | {_figure(r['decode_tok_s_b8'])} | {r['peak_rss_mb']:.0f} |"
        )
    train = [r for r in rows if "step_s" in r]
    if train:
        out += [
            "",
            "| fine-tuning step (batch 1 x 128 tokens) | step s | trainable M | peak RSS MB |",
            "|---|---:|---:|---:|",
        ]
        out += [f"| {r['form']} | {r['step_s']:.1f} | {r['trainable_m']:.1f} | {r['peak_rss_mb']:.0f} |" for r in train]
    return "\n".join(out)


def available_forms(forms: list[str]) -> tuple[list[str], str | None]:
    """The forms that can be built here, and why the llama.cpp ones were dropped (None when none was)."""
    if set(GGUF_FORMS) & set(forms) and not llama_cpp_forms.available():
        return [f for f in forms if f not in GGUF_FORMS], llama_cpp_forms.MISSING
    return forms, None


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/slmops-real-size"))
    parser.add_argument("--shape", choices=list(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--forms", nargs="*", default=[*FORMS, *GGUF_FORMS], choices=[*FORMS, *GGUF_FORMS])
    parser.add_argument("--train", nargs="*", default=list(TRAIN_METHODS), help="fine-tuning methods to time")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "export":
        export(args.work_dir)
        return
    if args.child == "gguf":
        llama_cpp_forms.build(args.work_dir)
        return
    if args.child in FORMS:
        print(json.dumps(measure(args.child, args.work_dir, args.prompt_tokens, args.new_tokens)))
        return
    if args.child in GGUF_FORMS:
        row = llama_cpp_forms.measure(args.child, args.work_dir, args.prompt_tokens, args.new_tokens, peak_rss_mb)
        print(json.dumps(row))
        return
    if args.child in TRAIN_METHODS:
        print(json.dumps(train_step(args.child, args.work_dir)))
        return
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.forms, skipped = available_forms(args.forms)
    started = time.perf_counter()
    _run_child_build(args)
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    lengths = ["--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)]
    rows = [r for form in args.forms if (r := _run_child(form, args.work_dir, *lengths))]
    rows += [r for method in args.train if (r := _run_child(method, args.work_dir))]
    print(json.dumps(rows, indent=1), file=sys.stderr)
    print(f"{args.shape}, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens (EOS ignored)\n")
    print(table(rows))
    if skipped:
        print(f"\n{skipped}")


def _run_child_build(args) -> None:
    """The build runs in this process (it frees the torch model before the ONNX export child starts)."""
    build(args.shape, args.work_dir, gguf=bool(set(GGUF_FORMS) & set(args.forms)))


if __name__ == "__main__":
    main()
