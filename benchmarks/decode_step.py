"""One decode step of an exported ONNX causal LM (optimum's KV-cache graph), alone: ms per step at batch 1, 8, 32.

Usage:
    .venv/bin/python -m benchmarks.decode_step /tmp/slmops-serving/int4 /tmp/slmops-serving/int8_block

Each folder's ``model.onnx`` gets one new token per row with a random KV cache of ``--past`` tokens, on
``--threads`` intra-op threads; the figure is the mean of ``--steps`` runs after one warm-up. No tokenizer, no
server, no Python decode loop: what the kernels themselves give as the batch grows (the README's serving section
quotes it for MatMulNBits' accuracy levels). Prints one line per folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def step_ms(path: Path, batch: int, past: int, steps: int, threads: int) -> float:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.full((batch, 1), 5, np.int64),
        "attention_mask": np.ones((batch, past + 1), np.int64),
        "position_ids": np.full((batch, 1), past, np.int64),
    }
    rng = np.random.default_rng(0)
    for node in session.get_inputs():
        if node.name.startswith("past_key_values"):
            heads, head_dim = node.shape[1], node.shape[3]
            feeds[node.name] = rng.random((batch, heads, past, head_dim), dtype=np.float32)
    session.run(None, feeds)
    started = time.perf_counter()
    for _ in range(steps):
        session.run(None, feeds)
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--past", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for folder in args.folders:
        times = {b: step_ms(folder, b, args.past, args.steps, args.threads) for b in args.batches}
        one = times.get(1)
        cells = [
            f"batch {b}: {ms:.1f} ms/step, {b * 1000 / ms:.1f} tok/s" + (f" (x{one * b / ms:.2f})" if one else "")
            for b, ms in times.items()
        ]
        print(f"{folder}: " + " · ".join(cells), flush=True)


if __name__ == "__main__":
    main()
