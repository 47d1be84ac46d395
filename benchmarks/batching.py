"""Continuous vs dynamic batching on one model, in one process, rounds interleaved (ratios survive a loaded machine).

Usage:
    .venv/bin/python -m benchmarks.batching --model /tmp/slmops-serving-quick/onnx_fp32      # after serving --quick
    .venv/bin/python -m benchmarks.batching --model /tmp/slmops-serving/onnx_fp32 --rounds 2 --max-tokens 64

Each round measures, one after the other on the same loaded model:
- ``b1``: requests one at a time through ``ChatModel.chat`` (batch-1 decode, the figure batching must beat);
- ``continuous`` and ``dynamic``: ``--clients`` closed-loop clients (each sends its next request when its answer
  is back) through ``ContinuousBatcher`` / ``Batcher`` (``serve.max_batch_size`` = clients), either with every
  request asking ``--max-tokens`` ("equal") or with budgets drawn from 1/8 to 1x of it ("mixed": a short request
  behind a long one is where dynamic batching waits).
Rates count the completion tokens each answer reports (the random-init model rarely emits EOS). No HTTP: the
server's own overhead is in ``benchmarks/serving.py``. Prints a markdown table of medians over ``--rounds`` and
the aggregate over batch-1 ratios, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slmops.inference.chat_model import ChatModel
from slmops.serve.batcher import Batcher
from slmops.serve.continuous import ContinuousBatcher


def prompts() -> list[list[dict]]:
    """The demo's generated test inquiries as chat messages."""
    from slmops.config.project import example_dir
    from slmops.demo.generate import generate
    from slmops.tasks import load_task

    task = load_task("ticket_triage", example_dir("ticket_triage"))
    return [task.build_messages(row["input"]) for row in generate(2, 10, 10, 64)["test"]]


def batch1(model: ChatModel, asks: list[tuple[list[dict], int]]) -> float:
    started = time.perf_counter()
    tokens = sum(model.chat(messages, budget).completion_tokens for messages, budget in asks)
    return tokens / (time.perf_counter() - started)


def loaded(batcher, model: ChatModel, asks: list[tuple[list[dict], int]], clients: int) -> float:
    """Aggregate completion tokens/s with ``clients`` closed-loop clients sharing ``asks``."""
    per_client = [asks[i::clients] for i in range(clients)]

    def client(mine: list[tuple[list[dict], int]]) -> int:
        return sum(batcher.generate(model, messages, budget).completion_tokens for messages, budget in mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(client, per_client))
    return tokens / (time.perf_counter() - started)


def workload(kind: str, messages: list[list[dict]], count: int, max_tokens: int, seed: int) -> list:
    rng = random.Random(seed)
    budget = (lambda: max_tokens) if kind == "equal" else (lambda: rng.randint(max(1, max_tokens // 8), max_tokens))
    return [(messages[i % len(messages)], budget()) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a served form's folder (ONNX or transformers)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32, help="per loaded measurement (b1: clients/2 of them)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = ChatModel.load(args.model)
    messages = prompts()
    model.chat(messages[0], 4)  # warm-up
    figures: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for kind in ("equal", "mixed"):
            asks = workload(kind, messages, args.requests, args.max_tokens, seed=r)
            figures.setdefault(f"{kind}/b1", []).append(batch1(model, asks[: max(1, args.clients // 2)]))
            for name, cls in (("continuous", ContinuousBatcher), ("dynamic", Batcher)):
                batcher = cls(max_batch_size=args.clients).start()
                try:
                    figures.setdefault(f"{kind}/{name}", []).append(loaded(batcher, model, asks, args.clients))
                finally:
                    batcher.stop()
    medians = {key: statistics.median(values) for key, values in figures.items()}
    print(f"| workload | batch-1 tok/s | {args.clients} clients continuous | x b1 | dynamic | x b1 | cont / dyn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("equal", "mixed"):
        b1, cont, dyn = (medians[f"{kind}/{m}"] for m in ("b1", "continuous", "dynamic"))
        print(f"| {kind} | {b1:.1f} | {cont:.1f} | {cont / b1:.2f} | {dyn:.1f} | {dyn / b1:.2f} | {cont / dyn:.2f} |")
    print(json.dumps({"model": str(args.model), "clients": args.clients, "max_tokens": args.max_tokens} | figures))


if __name__ == "__main__":
    main()
