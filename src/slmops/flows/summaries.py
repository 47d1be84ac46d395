"""The figure each stage's console line shows, read from its result (``Stage.summary``)."""

from __future__ import annotations

from typing import Any


def parity_summary(r: dict) -> str:
    steps = r["figures"]["steps"]
    return " · ".join(f"{s['step']} {s['output_agreement']:.2f}/{s['label_agreement']:.2f}" for s in steps) + (
        "  (output/label agreement: each quantized form with onnx_fp32, the rest with the step before)"
    )


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}" if isinstance(value, float) else str(value)


def join(parts: dict[str, Any]) -> str:
    return " · ".join(f"{k} {_n(v)}" for k, v in parts.items() if v is not None)


def prepare_summary(r: dict) -> str:
    return join(r["counts"] | {"rejected": sum(r["rejected"].values()), "PII masked": sum(r["pii_masked"].values())})


def synthesize_summary(r: dict) -> str:
    accepted = sum(r["counts"].get(k, 0) for k in ("teacher_label", "teacher_augment", "teacher_contrast"))
    parts = {"asked": r["counts"]["asked"], "accepted": accepted, "rejected": sum(r["rejected"].values())}
    parts |= {"contrast": r["counts"].get("teacher_contrast")}
    filtered, coverage = sum(r.get("filtered", {}).values()), r.get("diversity", {}).get("coverage")
    parts |= {"of them filtered": filtered or None, "test coverage": coverage}
    return join(parts | {"teacher calls": r["teacher_calls"], "cached": r["cache_hits"], "rows": r["counts"]["total"]})


def finetune_summary(r: dict) -> str:
    parts = {"examples": r["train_examples"], "epochs": r.get("epochs"), "loss": r["final_train_loss"]}
    parallel = f" ({r['parallel']})" if r.get("parallel", "none") != "none" else ""  # ddp or fsdp: N processes
    line = f"{r['method']}{parallel} · " + join(parts | {"eval loss": r["eval_loss"]})
    if r.get("active"):  # active distillation's rounds (slmops.train.active)
        a = r["active"]
        line += " · active " + join(
            {"rounds": len(a["rounds"]), "label calls": a["label_calls"], "new calls": r.get("teacher_calls")}
        )
    return line + ("  UNDER-TRAINED: see the WARNING above" if r.get("warning") else "")


def harvest_summary(r: dict) -> str:
    parts = {"read": r["rows_read"], "selected": r["selected"], "batches": r["batches_total"]}
    return join(parts | {"rows": r["rows_total"]}) + (f"  ({join(r['by_reason'])})" if r["by_reason"] else "")


def label_traffic_summary(r: dict) -> str:
    parts = {"harvested": r["harvested"], "labelled": r["labelled"], "rejected": sum(r["rejected"].values())}
    return join(parts | {"teacher calls": r["teacher_calls"], "train": r["train_rows"], "recent": r["recent_rows"]})


def evaluate_summary(r: dict) -> str:
    name, served = next(((k, v) for k, v in r["metrics"].items() if k.startswith("student_")), ("", {}))
    shown = [k for k in served if k not in ("n", "latency_p50_ms", "latency_p95_ms", "size_mb", "exact_match")][:3]
    line = f"{name} " + join({k: served[k] for k in shown} | {"p95 ms": served.get("latency_p95_ms")})
    recent = r["metrics"].get(f"recent_{name}")
    headline = next((k for k in shown if k.endswith("_accuracy")), shown[0] if shown else None)
    return line + (f" · recent traffic {headline} {_n(recent[headline])}" if recent and headline else "")
