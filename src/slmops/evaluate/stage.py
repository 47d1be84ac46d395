"""Evaluate stage: task metrics, latency and size for the teacher, the student (torch) and the student (ONNX int8).

Usage:
    slmops stage evaluate --profile demo
    slmops evaluate --model poc --data my_eval.jsonl      # any labelled file, any model

Each model answers every test inquiry one request at a time (batch 1, as a served model does), so the
latencies are what a user would see. Writes ``metrics.json`` (one object per model), ``predictions_<name>.jsonl``
and ``comparison.csv``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from tqdm.auto import tqdm

from slmops.config import EvaluateConfig, Params, TeacherConfig
from slmops.export.quantize import dir_size_mb
from slmops.inference.chat_model import Completion
from slmops.io import load_jsonl, write_jsonl, write_manifest
from slmops.tasks import Task


class Chat(Protocol):
    def chat(self, messages: list[dict[str, str]], max_tokens: int = ...) -> Completion: ...


class EvaluateResult(BaseModel):
    out_dir: Path
    metrics: dict[str, dict[str, float]]


def served_inputs(path: Path, params: Params, task: Task, rejects: list[dict]) -> list[dict]:
    """A labelled file's valid rows, each input as the served model reads it: NFKC, and PII placeholders when the
    server masks them (``serve.mask_inputs``, the server's fast path). Bad rows go to ``rejects`` (file, line)."""
    from collections import Counter

    from slmops.data.prepare import PrepareConfig, load_clean

    cfg = PrepareConfig(mask_pii=params.serve.mask_inputs, min_chars=1)
    return load_clean(path, cfg, task, True, rejects, Counter(), params.pii.model_copy(update={"ner": False}))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Candidate(BaseModel):
    """A model to evaluate: how to call it, where it lives (for its size), and whether it is the teacher (which
    gets the task's instructions; a student gets the bare input it was fine-tuned on)."""

    model_config = {"arbitrary_types_allowed": True}
    chat: Any
    folder: Path | None = None
    teacher: bool = False


def evaluate_model(
    model: Chat,
    task: Task,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    desc: str = "eval",
    teacher: bool = False,
) -> tuple[dict[str, float], list[dict]]:
    prompt = task.build_teacher_messages if teacher else task.build_messages
    outputs, latencies, predictions = [], [], []
    for row in tqdm(rows, desc=desc, unit="ex", leave=False):
        started = time.perf_counter()
        completion = model.chat(prompt(row["input"]), max_tokens=max_new_tokens)
        latencies.append((time.perf_counter() - started) * 1000)
        outputs.append(completion.text)
        label = task.parse_output(completion.text)[0]
        predictions.append(
            {
                "input": row["input"],
                "output": completion.text,
                "expected": row["expected"],
                "predicted": label.model_dump() if label is not None else None,
            }
        )
    metrics = task.compute_metrics(outputs, [r["expected"] for r in rows])
    metrics |= {
        "latency_p50_ms": statistics.median(latencies) if latencies else 0.0,
        "latency_p95_ms": percentile(latencies, 0.95),
    }
    return metrics, predictions


def run(cfg: EvaluateConfig, *, task: Task, test: Path, models: dict[str, Candidate], out_dir: Path) -> EvaluateResult:
    rows = load_jsonl(test)[: cfg.max_examples]
    out_dir.mkdir(parents=True, exist_ok=True)
    all_metrics: dict[str, dict[str, float]] = {}
    for name, candidate in models.items():
        metrics, predictions = evaluate_model(
            candidate.chat, task, rows, cfg.max_new_tokens, f"eval {name}", candidate.teacher
        )
        if candidate.folder is not None:
            metrics["size_mb"] = dir_size_mb(candidate.folder)
        all_metrics[name] = metrics
        write_jsonl(out_dir / f"predictions_{name}.jsonl", predictions)
        for field in (k for k, f in task.fields.items() if f.type == "enum"):
            confusion_plot(task, field, predictions, name, out_dir / f"confusion_{field}_{name}.png")
    (out_dir / "metrics.json").write_text(json.dumps(all_metrics, indent=2))
    columns = sorted({k for m in all_metrics.values() for k in m})
    lines = ["model," + ",".join(columns)]
    lines += [name + "," + ",".join(f"{m.get(c, '')}" for c in columns) for name, m in all_metrics.items()]
    (out_dir / "comparison.csv").write_text("\n".join(lines) + "\n")
    write_manifest(out_dir, stage="evaluate", n=len(rows))
    return EvaluateResult(out_dir=out_dir, metrics=all_metrics)


def confusion_plot(task: Task, field: str, predictions: list[dict], model: str, path: Path) -> None:
    """A confusion matrix of one enum field (rows: reference, columns: prediction, plus "invalid")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = list(task.fields[field].values or [])
    predicted_axis = values + ["invalid"]
    counts = [[0] * len(predicted_axis) for _ in values]
    for p in predictions:
        gold = p["expected"].get(field)
        guess = (p["predicted"] or {}).get(field, "invalid")
        if gold in values:
            counts[values.index(gold)][predicted_axis.index(guess if guess in values else "invalid")] += 1
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(predicted_axis), 1 + 0.6 * len(values)))
    ax.imshow(counts, cmap="Blues")
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(predicted_axis)), predicted_axis, rotation=45, ha="right")
    ax.set_yticks(range(len(values)), values)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{model}: {field}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_models(
    cfg: EvaluateConfig,
    *,
    task: Task,
    test: Path,
    quantized: dict[str, Path],
    out_dir: Path,
    student: Path | None = None,
    teacher: TeacherConfig | None = None,
) -> EvaluateResult:
    """The pipeline's comparison on one test set: the teacher and the trained student (when given) and every
    quantized form (``quantized``: weight type -> folder), named ``student_<weight type>``."""
    from contextlib import ExitStack

    from slmops.inference.chat_model import ChatModel

    models = {} if student is None else {"student": Candidate(chat=ChatModel.load(student), folder=student)}
    for form, folder in quantized.items():
        models[f"student_{form}"] = Candidate(chat=ChatModel.load(folder), folder=folder)
    with ExitStack() as stack:
        if teacher is not None:
            from slmops.teacher.chat import TeacherChat

            models = {"teacher": Candidate(chat=stack.enter_context(TeacherChat.open(teacher)), teacher=True), **models}
        return run(cfg, task=task, test=test, models=models, out_dir=out_dir)
