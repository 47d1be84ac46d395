"""One decode step of an exported ONNX causal LM (optimum's KV-cache graph), alone: ms per step at batch 1, 8, 32.

Usage:
    .venv/bin/python -m benchmarks.decode_step /tmp/slmops-serving/int4 /tmp/slmops-serving/int8_block
    .venv/bin/python -m benchmarks.decode_step /tmp/slmops-serving/int4 --past 64 160 --prefill 100

Each folder's ``model.onnx`` gets one new token per row with a random KV cache of ``--past`` tokens (each value in
turn), on ``--threads`` intra-op threads; the figure is the mean of ``--steps`` runs after one warm-up. No
tokenizer, no server, no Python decode loop: what the kernels themselves give as the batch grows (the README's
serving section quotes it for MatMulNBits' accuracy levels). ``--prefill N`` also times one prompt of N tokens
alone and each batch of such prompts (ms per prompt token): prefill is compute-bound, so these figures bound what
any scheduler can serve (the README's serving ceiling). ``--ops`` adds each op type's share of the kernel time
(ONNX Runtime's profiler, over every run timed). Prints one line per folder and past length.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def session(path: Path, threads: int, profile: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = profile
    return ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])


def step_ms(model, batch: int, past: int, steps: int, new: int = 1) -> float:
    """Mean ms of one run feeding ``new`` tokens to each of ``batch`` rows after ``past`` cached ones."""
    import numpy as np

    feeds = {
        "input_ids": np.full((batch, new), 5, np.int64),
        "attention_mask": np.ones((batch, past + new), np.int64),
        "position_ids": np.tile(np.arange(past, past + new), (batch, 1)).astype(np.int64),
    }
    rng = np.random.default_rng(0)
    for node in model.get_inputs():
        if node.name.startswith("past_key_values"):
            heads, head_dim = node.shape[1], node.shape[3]
            feeds[node.name] = rng.random((batch, heads, past, head_dim), dtype=np.float32)
    model.run(None, feeds)
    started = time.perf_counter()
    for _ in range(steps):
        model.run(None, feeds)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--past", type=int, nargs="+", default=[64])
    parser.add_argument("--prefill", type=int, default=0, help="also time prompts of this many tokens (0: not)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ops", action="store_true", help="also print each op type's share of the step time")
    args = parser.parse_args()
    for folder in args.folders:
        model = session(folder, args.threads, args.ops)
        for past in args.past:
            times = {b: step_ms(model, b, past, args.steps) for b in args.batches}
            one = times.get(1)
            cells = [
                f"batch {b}: {ms:.1f} ms/step, {b * 1000 / ms:.1f} tok/s" + (f" (x{one * b / ms:.2f})" if one else "")
                for b, ms in times.items()
            ]
            print(f"{folder} past {past}: " + " · ".join(cells), flush=True)
        if args.prefill:
            reps = max(1, args.steps // 4)
            per_token = {b: step_ms(model, b, 0, reps, args.prefill) / (b * args.prefill) for b in args.batches}
            cells = [f"{b} x {args.prefill}: {ms:.2f}" for b, ms in per_token.items()]
            print(f"{folder} prefill, ms per prompt token: " + " · ".join(cells), flush=True)
        if args.ops:
            print(f"{folder} op shares, every run above: {op_shares(model.end_profiling())}", flush=True)


def op_shares(profile: str, top: int = 6) -> str:
    """The op types taking most of the kernel time in ONNX Runtime's profile file (which is then removed)."""
    import json
    from collections import Counter

    events = json.loads(Path(profile).read_text())
    Path(profile).unlink()
    spent: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    total = sum(spent.values()) or 1
    return ", ".join(f"{op} {100 * us / total:.0f}%" for op, us in spent.most_common(top))


if __name__ == "__main__":
    main()
