"""The demo teacher's accuracy on the hand-written dev set and on the generated test set, and its speed.

Usage:
    .venv/bin/python -m benchmarks.demo_teacher            # a few seconds on a 2-core CPU
    .venv/bin/python -m benchmarks.demo_teacher --profile smoke --target slmops.demo.teacher:answer
    .venv/bin/python -m benchmarks.demo_teacher --data src/slmops/templates/ticket_triage/data/dev_handwritten_6.jsonl

The hand-written set (src/slmops/templates/ticket_triage/data/dev_handwritten.jsonl) was written by hand in
phrasings the
generator does not produce and is read by nothing but evaluation. The generated test set is made fresh in a
temporary folder with the profile's seed and sizes. Prints category/priority accuracy, JSON validity and the
per-category recall on each set, then the time per 1,000 labelling and 1,000 self-instruct answers. The last
line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from slmops.config import load_params
from slmops.config.project import example_dir
from slmops.demo import write_data
from slmops.io import load_jsonl
from slmops.tasks import load_task

DEV_SET = Path(__file__).resolve().parents[1] / "src/slmops/templates/ticket_triage/data/dev_handwritten.jsonl"


def score(answer: Callable, task, rows: list[dict]) -> dict:
    outputs = [answer(task.build_teacher_messages(r["input"])) for r in rows]
    metrics = task.compute_metrics(outputs, [r["expected"] for r in rows])
    hits, totals = Counter(), Counter()
    for out, row in zip(outputs, rows, strict=True):
        label, _ = task.parse_output(out)
        gold = row["expected"]["category"]
        totals[gold] += 1
        hits[gold] += label is not None and label.category == gold
    metrics["recall_by_category"] = {c: round(hits[c] / totals[c], 3) for c in sorted(totals)}
    return metrics


def per_thousand(fn: Callable, requests: list[list[dict]]) -> float:
    """Seconds per 1,000 answers over ``requests`` (cycled to 1,000)."""
    batch = [requests[i % len(requests)] for i in range(1000)]
    start = time.perf_counter()
    for messages in batch:
        fn(messages)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--target", default="slmops.demo.teacher:answer", help="module:function")
    parser.add_argument("--data", type=Path, default=DEV_SET, help="a hand-written set (default: the first)")
    args = parser.parse_args()
    params = load_params(args.profile, project=getattr(args, "work_dir", None) or example_dir("ticket_triage"))
    task = load_task("ticket_triage", example_dir("ticket_triage"))
    module, _, name = args.target.partition(":")
    answer = getattr(importlib.import_module(module), name)

    with tempfile.TemporaryDirectory() as tmp:
        d = params.demo
        write_data(task.spec.demo_generator, params.project.seed, d.n_seed, d.n_pool, d.n_test, Path(tmp))
        generated = load_jsonl(Path(tmp) / "test.jsonl")
        seed_rows = load_jsonl(Path(tmp) / "seed.jsonl")
    figures: dict = {"teacher": args.target}
    figures["handwritten_file"] = args.data.name
    for name_, rows in (("handwritten_dev", load_jsonl(args.data)), ("generated_test", generated)):
        m = score(answer, task, rows)
        figures[name_] = m
        print(
            f"{name_:16s} n={int(m['n']):4d}  category {m['category_accuracy']:.3f}  "
            f"priority {m['priority_accuracy']:.3f}  json_valid {m['json_valid_rate']:.3f}"
        )
        print(f"{'':16s} recall by category: {m['recall_by_category']}")
    labelling = [task.build_teacher_messages(r["input"]) for r in generated]
    augment = [task.build_augment_messages(r["expected"]["category"], r["input"]) for r in seed_rows[:200]]
    figures["s_per_1000_label"] = round(per_thousand(answer, labelling), 4)
    figures["s_per_1000_augment"] = round(per_thousand(answer, augment), 4)
    print(
        f"time per 1,000 answers: labelling {figures['s_per_1000_label']:.3f} s, "
        f"self-instruct {figures['s_per_1000_augment']:.3f} s"
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
