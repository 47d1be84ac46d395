"""How many tokens the demo's tokenizer spends on each kind of training input, and on the hand-written dev set.

Usage (after ``make demo``):
    .venv/bin/python -m benchmarks.demo_tokens            # reads ./demo; a few seconds
    .venv/bin/python -m benchmarks.demo_tokens --project path/to/project

A tokenizer trained on one generator's text merges that generator's phrases into single tokens: its inputs
cost few tokens, and text in other words is split far finer. The figures show how far apart the generator's
rows (``gold``, ``teacher_label``), the teacher-written rows (``teacher_augment``) and hand-written text are.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from slmops.io import load_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path("demo"))
    project = parser.parse_args().project
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(project / "models" / "tokenizer")
    texts: dict[str, list[str]] = {}
    for row in load_jsonl(project / "data" / "synthetic" / "train.jsonl"):
        texts.setdefault(row.get("source", "unknown"), []).append(row["input"])
    texts["dev_handwritten"] = [r["input"] for r in load_jsonl(project / "data" / "dev_handwritten.jsonl")]
    figures = {}
    for name, inputs in texts.items():
        lengths = sorted(len(tokenizer(t)["input_ids"]) for t in inputs)
        figures[name] = {"rows": len(lengths), "median": statistics.median(lengths), "max": lengths[-1]}
        print(f"{name:<18} rows {len(lengths):>6,}  median tokens {figures[name]['median']:>6}  max {lengths[-1]:>5}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
