"""GenAI form in process: 8 greedy conversations one after the other vs as rows of one generator, side by side.

Usage:
    .venv/bin/python -m benchmarks.genai_batch --model /tmp/slmops-serving/genai_int4 --rounds 3

Loads a GenAI folder (``genai_config.json`` + ``model.onnx``, e.g. the one ``benchmarks/serving.py`` builds at
Qwen2.5-0.5B shapes) and times, in interleaved rounds, ``chat_batch`` on ``--batch`` demo-like prompts of
different lengths with the batch split into single calls (what a server gets with no batching) and in one call
(the rows share each decode step). Prints tokens/s for both, their ratio (median over rounds), and whether every
answer's tokens were the same both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

INQUIRIES = [
    "注文した商品が届きません",
    "パスワードを忘れました。ログインできないので再設定の方法を教えてください",
    "請求書の金額が違います",
    "アプリが起動しません",
    "解約したいのですが、手続きの方法と違約金について教えてください",
    "配送先を変更できますか",
    "ポイントが反映されていません",
    "領収書を発行してほしいです。宛名は会社名でお願いします",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("/tmp/slmops-serving/genai_int4"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from slmops.inference.chat_model import ChatModel

    model = ChatModel.load(args.model)
    prompts = [[{"role": "user", "content": INQUIRIES[i % len(INQUIRIES)]}] for i in range(args.batch)]
    rates: dict[str, list[float]] = {"one_by_one": [], "batched": []}
    same = True
    for _ in range(args.rounds):
        started = time.perf_counter()
        alone = [model.chat_batch([p], args.new_tokens)[0] for p in prompts]
        rates["one_by_one"].append(sum(a.completion_tokens for a in alone) / (time.perf_counter() - started))
        started = time.perf_counter()
        together = model.chat_batch(prompts, args.new_tokens)
        rates["batched"].append(sum(a.completion_tokens for a in together) / (time.perf_counter() - started))
        same = same and [a.text for a in alone] == [a.text for a in together]
    one, many = statistics.median(rates["one_by_one"]), statistics.median(rates["batched"])
    print(f"one by one {one:.1f} tok/s | batch {args.batch} {many:.1f} tok/s | x{many / one:.2f}", end=" ")
    print(f"| same answers: {same}")


if __name__ == "__main__":
    main()
