"""Fine-tuning throughput per method and configuration, through the project's own training path.

Usage:
    python -m benchmarks.train_throughput                          # tiny shapes on this CPU (under 2 minutes)
    python -m benchmarks.train_throughput --shapes 0.5b 1.5b       # Qwen2.5 shapes, random init (default on a GPU)
    python -m benchmarks.train_throughput --methods lora --configs padded packed --epochs 1
    python -m benchmarks.train_throughput --methods lora --configs padded --lora-dropout 0   # the demo profile's

Each row trains with ``slmops.train`` (``load_base``, ``lora_config``, ``training_args``, ``train_sft``) on the
ticket_triage task's generated inquiries, tokenized by a demo tokenizer; the model is random-init from a config
dict (no download). Every configuration of a method sees the same examples for the same epochs, at the same
tokens per optimizer step (packed rows: as many rows as hold the padded batch's tokens). It prints examples/s and
tokens/s (real tokens, after the first step), MFU = 6 x N x tokens/s over a matrix-product peak measured here
(N = every parameter, as in issue 23; LoRA does about 4 x N of that work), peak memory (CUDA: allocated;
CPU: the process's peak RSS, interpreter and libraries included) and the final train and eval loss.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import time
from pathlib import Path

SHAPES = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json and Qwen2.5-1.5B (values copied)
    "0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14},
    "1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12},
}
QWEN = {"vocab_size": 151936, "num_key_value_heads": 2, "rope_theta": 1_000_000.0, "tie_word_embeddings": True}
CONFIGS = {  # finetune.training keys
    "padded": {},
    "packed": {"packing": True},
    "packed+gc": {"packing": True, "gradient_checkpointing": True},
    "packed+liger": {"packing": True, "use_liger_kernel": True},  # only where liger-kernel is installed
}
METHODS = ("full", "lora", "qlora")
LEARNING_RATE = {"full": 5e-4, "lora": 2e-3, "qlora": 2e-3}


def matmul_peak(device: str) -> tuple[float, str]:
    """FLOP/s of a dense matrix product here (best of 5) and what was multiplied."""
    import torch

    cuda = device == "cuda"
    n, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    best = float("inf")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(5):
        sync()
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - started) / 10)
    threads = "" if cuda else f", {torch.get_num_threads()} threads"
    return 2 * n**3 / best, f"{str(dtype).removeprefix('torch.')} {n}x{n} matmul{threads}"


def build(work: Path, shape: str, n_train: int, n_val: int) -> tuple[Path, int, list[dict], list[dict]]:
    """A demo tokenizer with the random-init model of ``shape`` beside it, its parameter count, and the train /
    val SFT records."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from slmops.config.project import example_dir
    from slmops.demo.generate import generate
    from slmops.demo.tokenizer import run as train_tokenizer
    from slmops.io import write_jsonl
    from slmops.tasks import load_task
    from slmops.train.finetune import sft_records

    task = load_task("ticket_triage", example_dir("ticket_triage"))
    sets = generate(7, n_train + n_val, 100, 0)
    model_dir = work / shape
    if not (model_dir / "config.json").exists():
        raw = work / "raw"
        for name in ("seed", "pool"):
            write_jsonl(raw / f"{name}.jsonl", sets[name])
        train_tokenizer(1024, task=task, raw_dir=raw, out_dir=model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        vocab = QWEN["vocab_size"] if shape != "tiny" else len(tokenizer)
        ids = {k: getattr(tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
        config = AutoConfig.for_model("qwen2", **(QWEN | SHAPES[shape] | {"vocab_size": vocab} | ids))
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    with torch.device("meta"):
        n_params = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).num_parameters()
    records = sft_records(task, sets["seed"])
    return model_dir, n_params, records[:n_train], records[n_train:]


class StepClock:
    """Wall time at the end of every optimizer step (a ``TrainerCallback``; built lazily, transformers is heavy)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.ends: list[float] = []

            def on_step_end(self, args, state, control, **kwargs):
                self.ends.append(time.perf_counter())

        return _Clock()


def reset_peak_memory(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1e6


def measure(method: str, config: str, model_dir: Path, train: list[dict], val: list[dict], opts) -> dict:
    """One training run: throughput after the first step, peak memory, final losses."""
    from transformers import AutoTokenizer, set_seed

    from slmops.config import FinetuneConfig, LoraParams, TrainingConfig
    from slmops.train.base import load_base, lora_config
    from slmops.train.finetune import train_sft, training_args

    keys = CONFIGS[config]
    batch = opts.batch_size
    if keys.get("packing"):  # rows of max_length tokens: as many as hold the padded batch's tokens
        batch = max(1, round(opts.batch_size * opts.mean_tokens / opts.max_length))
    training = TrainingConfig(
        epochs=opts.epochs,
        batch_size=batch,
        learning_rate=LEARNING_RATE[method],
        max_length=opts.max_length,
        logging_steps=1,
        undertrained_eval_loss=None,
        **keys,
    )
    lora = LoraParams(dropout=opts.lora_dropout) if opts.lora_dropout is not None else LoraParams()
    cfg = FinetuneConfig(method=method, training=training, lora=lora)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(0)
    reset_peak_memory(opts.device)
    clock = StepClock()
    args = training_args(training, opts.work_dir / "run", seed=0, n_train=len(train), eval_packing=False)
    peft = lora_config(cfg) if method != "full" else None
    model = load_base(cfg, str(model_dir))
    trainer, history = train_sft(model, tokenizer, train, val, args, peft, callbacks=[clock], desc=f"{method} {config}")
    eval_loss = trainer.evaluate()["eval_loss"]
    peak = peak_memory_gb(opts.device)
    steps = trainer.state.global_step
    share = (steps - 1) / steps  # the first step (warm-up) is not timed
    seconds = clock.ends[-1] - clock.ends[0]
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * opts.epochs
    del trainer, model
    _free(opts.device)
    return {
        "method": method,
        "config": config,
        "batch": batch,
        "steps": steps,
        "examples_s": len(train) * opts.epochs * share / seconds,
        "tokens_s": tokens * share / seconds,
        "peak_gb": peak,
        "train_loss": next(h["loss"] for h in reversed(history) if "loss" in h),
        "eval_loss": eval_loss,
    }


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def skip_reason(method: str, config: str, device: str) -> str | None:
    if "liger" in config and (device != "cuda" or importlib.util.find_spec("liger_kernel") is None):
        return "Liger kernels need CUDA and the liger-kernel package"
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    return None


def table(rows: list[dict], n_params: int, peak: float) -> str:
    out = [
        "| method | config | batch | steps | examples/s | tokens/s | MFU | peak mem GB | train loss | eval loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mfu = 6 * n_params * r["tokens_s"] / peak
        out.append(
            f"| {r['method']} | {r['config']} | {r['batch']} | {r['steps']} | {r['examples_s']:.1f} | "
            f"{r['tokens_s']:,.0f} | {mfu:.2%} | {r['peak_gb']:.2f} | {r['train_loss']:.3f} | {r['eval_loss']:.3f} |"
        )
    return "\n".join(out)


def run_shape(shape: str, opts) -> None:
    from transformers import AutoTokenizer

    model_dir, n_params, train, val = build(opts.work_dir, shape, opts.n_train, opts.n_val)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tokenizer.apply_chat_template(r["prompt"] + r["completion"])) for r in train]
    opts.mean_tokens = sum(lengths) / len(lengths)
    rows, skipped = [], {}
    for method in opts.methods:
        for config in opts.configs:
            reason = skip_reason(method, config, opts.device)
            try:
                rows.append(measure(method, config, model_dir, train, val, opts) if not reason else None)
            except Exception as err:  # a row that cannot run here says why; the others still run
                reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            if reason:
                skipped.setdefault(reason, []).append(f"{method} {config}")
    print(
        f"\n{shape}: {n_params / 1e6:,.1f}M parameters, {len(train)} examples x {opts.epochs:g} epochs, "
        f"{opts.mean_tokens:.0f} tokens per example (max {max(lengths)}), padded batch {opts.batch_size}, "
        f"max_length {opts.max_length}\n"
    )
    print(table([r for r in rows if r], n_params, opts.peak))
    for reason, which in skipped.items():
        print(f"skipped {', '.join(which)}: {reason}")


def quiet_libraries() -> None:
    """Only the table on stdout: no dataset-map bars, library warnings or bitsandbytes' kernel-hub notice."""
    import logging
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def main() -> None:
    import torch

    quiet_libraries()
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["0.5b", "1.5b"] if cuda else ["tiny"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--n-train", type=int, default=None, help="default: 96 at tiny shapes, else 640")
    parser.add_argument("--n-val", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=None, help="default: 2 at tiny shapes, else 1")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-dropout", type=float, help="finetune.lora.dropout (default: the code default)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/slmops-train-throughput"))
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: 1 with only tiny shapes, else torch's)"
    )
    opts = parser.parse_args()
    if opts.threads or (not cuda and opts.shapes == ["tiny"]):
        # At tiny shapes each op is too small to split; on a shared 2-core machine 2 threads ran 5x slower than 1.
        torch.set_num_threads(opts.threads or 1)
    opts.device = "cuda" if cuda else "cpu"
    opts.peak, what = matmul_peak(opts.device)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{name}: peak {opts.peak / 1e12:.3f} TFLOP/s measured ({what}); MFU = 6 x N x tokens/s / that peak")
    for shape in opts.shapes:
        tiny = shape == "tiny"
        sizes = {"n_train": opts.n_train or (96 if tiny else 640), "epochs": opts.epochs or (2 if tiny else 1)}
        run_shape(shape, argparse.Namespace(**(vars(opts) | sizes)))


if __name__ == "__main__":
    main()
