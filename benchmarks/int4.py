"""What each int4 setting costs on your own student, side by side in one run: ONNX fp32, int8 and int4 by
algorithm (rtn, hqq, k_quant) and block size, each quantized from the same ONNX fp32 export.

Usage (after `make demo`, or on any run's work dir):
    .venv/bin/python -m benchmarks.int4 --n 300
    .venv/bin/python -m benchmarks.int4 --data src/slmops/templates/ticket_triage/data/dev_handwritten.jsonl

Prints, per form: size, the task's first accuracy metric, and how often its greedy answer (and its label) is the
same as ONNX fp32's on the same inputs, which is what the parity gate measures. Accuracy saturates on easy
data; agreement with fp32 still shows what 4 bits change. The int4 folders go to ``--out`` (scratch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops.config import QuantizeConfig, load_params
from slmops.config.project import example_dir
from slmops.evaluate.parity import label_of
from slmops.evaluate.stage import evaluate_model, served_inputs
from slmops.export.quantize import dir_size_mb, quantize_int4
from slmops.inference.chat_model import ChatModel
from slmops.tasks import load_task

SETTINGS = [(algorithm, block) for algorithm in ("rtn", "hqq", "k_quant") for block in (32, 16)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("."))
    parser.add_argument("--profile", default="demo", help="params profile (its task decides the metrics)")
    parser.add_argument("--data", type=Path, help="JSONL with input/expected (default: the run's test split)")
    parser.add_argument("--n", type=int, default=300, help="examples to answer")
    parser.add_argument("--out", type=Path, default=Path("reports/bench_int4"), help="scratch folder")
    args = parser.parse_args()
    params = load_params(args.profile, project=getattr(args, "work_dir", None) or example_dir("ticket_triage"))
    task = load_task(params.task, args.work_dir)
    rows = served_inputs(args.data or args.work_dir / "data/prepared/test.jsonl", params, task, [])[: args.n]
    fp32 = args.work_dir / "models/student_onnx/fp32"
    folders = {"onnx_fp32": fp32, "int8": args.work_dir / "models/student_onnx/int8"}
    for algorithm, block in SETTINGS:
        cfg = QuantizeConfig(weight_type="int4", int4_algorithm=algorithm, int4_block_size=block)
        try:
            folders[f"int4_{algorithm}_b{block}"] = quantize_int4(fp32, args.out / f"{algorithm}_b{block}", cfg)
        except ValueError as err:  # e.g. k_quant on an odd block count
            print(f"int4_{algorithm}_b{block}: skipped: {err}")
    results = _compare(folders, task, rows, params.evaluate.max_new_tokens)
    print(f"{len(rows)} examples from {args.data or 'the test split'}; agreement is with onnx_fp32's answers")
    keys = list(next(iter(results.values())))
    print("| form | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, figures in results.items():
        print(f"| {name} | " + " | ".join(str(figures[k]) for k in keys) + " |")
    print(json.dumps(results))


def _compare(folders: dict[str, Path], task, rows: list[dict], max_new_tokens: int) -> dict[str, dict]:
    """Each form's size, primary accuracy, agreement with the first form's answers, and p50 latency."""
    primary = next(m for m in task.metric_names if m.endswith("_accuracy"))
    results, reference, first = {}, None, next(iter(folders.values()))
    for name, folder in folders.items():
        model = ChatModel.load(folder)
        evaluate_model(model, task, rows[:5], max_new_tokens, desc="warm-up")
        metrics, predictions = evaluate_model(model, task, rows, max_new_tokens, desc=name)
        answers = [p["output"] for p in predictions]
        reference = reference or answers
        results[name] = {
            "size_mb": round(dir_size_mb(folder), 2),
            "x_smaller": round(dir_size_mb(first) / dir_size_mb(folder), 2),
            primary: round(metrics[primary], 4),
            "output_agreement": _share(answers, reference, lambda a: a),
            "label_agreement": _share(answers, reference, lambda a: label_of(task, a)),
            "p50_ms": round(metrics["latency_p50_ms"], 1),
        }
    return results


def _share(answers: list[str], reference: list[str], key) -> float:
    return round(sum(key(a) == key(b) for a, b in zip(answers, reference, strict=True)) / max(len(answers), 1), 4)


if __name__ == "__main__":
    main()
