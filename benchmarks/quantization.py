"""Side by side in one run: the student as transformers (torch fp32), ONNX fp32 and ONNX int8.

Usage (after `make demo`):
    .venv/bin/python benchmarks/quantization.py --n 100

Prints accuracy, latency p50/p95 (one request at a time) and size for each, then the int8 ratios.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slmops.config import load_params
from slmops.config.project import example_dir
from slmops.evaluate.stage import evaluate_model
from slmops.export.quantize import dir_size_mb
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("."))
    parser.add_argument("--n", type=int, default=100, help="test inquiries to time")
    parser.add_argument("--profile", default="demo", help="params profile (its task decides the metrics)")
    args = parser.parse_args()
    w = args.work_dir
    task = load_task(
        load_params(args.profile, project=getattr(args, "work_dir", None) or example_dir("ticket_triage")).task, w
    )
    primary = next(m for m in task.metric_names if m.endswith("_accuracy"))
    rows = load_jsonl(w / "data/prepared/test.jsonl")[: args.n]
    folders = {
        "torch_fp32": w / "models/student",
        "onnx_fp32": w / "models/student_onnx/fp32",
        "onnx_int8": w / "models/student_onnx/int8",
    }
    results = {}
    for name, folder in folders.items():
        model = ChatModel.load(folder)
        evaluate_model(model, task, rows[:5], 96, desc="warm-up")
        metrics, _ = evaluate_model(model, task, rows, 96, desc=name)
        results[name] = {k: round(metrics[k], 4) for k in (primary, "latency_p50_ms", "latency_p95_ms")}
        results[name]["size_mb"] = round(dir_size_mb(folder), 2)
    for name, m in results.items():
        print(f"{name:<11} " + "  ".join(f"{k}={v}" for k, v in m.items()))
    base, int8 = results["torch_fp32"], results["onnx_int8"]
    ratios = {
        "p50_speedup_int8_vs_torch": round(base["latency_p50_ms"] / int8["latency_p50_ms"], 2),
        "size_ratio_int8_vs_torch": round(int8["size_mb"] / base["size_mb"], 3),
        "accuracy_delta_int8_vs_torch": round(int8[primary] - base[primary], 4),
    }
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
