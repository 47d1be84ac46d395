"""The pipeline flow: prepare -> synthesize -> finetune -> quantize -> evaluate -> gate + register.

Usage:
    slmops run --profile demo          # or: python -m flows.pipeline demo

With ``demo`` or ``smoke`` params the flow first builds the offline stand-ins (data, tokenizer, student
base model, demo teacher served over HTTP). Every stage is a Prefect task wrapping one component, logged
as a nested MLflow run under one parent run, and cached by content (see ``flows/stages.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from pydantic import BaseModel

from components.config import Layout, Params, load_gates, load_params, resolve_model_path
from components.io import sha256_tree
from flows.runtime import flatten, tracking
from flows.stages import code_hash, run_stage


@task(name="build-demo-stand-ins")
def build_demo(params: Params, layout: Layout, parent: str) -> None:
    """Offline stand-ins for what real users download or rent: data, tokenizer, student base, teacher."""
    from components.demo import generate, models, tokenizer
    from components.quantize import export_onnx

    d, seed = params.demo, params.project.seed
    run_stage(
        "demo-data",
        config=d.model_dump(include={"n_seed", "n_pool", "n_test"}) | {"seed": seed},
        inputs=[],
        code=code_hash("demo/generate.py"),
        out_dir=layout.raw,
        parent_run_id=parent,
        fn=lambda: _Counts(counts=generate.run(seed, d.n_seed, d.n_pool, d.n_test, layout.raw)),
    )
    prepare(params, layout, parent)
    run_stage(
        "demo-tokenizer",
        config={"vocab_size": d.vocab_size},
        inputs=[layout.prepared],
        code=code_hash("demo/tokenizer.py"),
        out_dir=layout.tokenizer,
        parent_run_id=parent,
        fn=lambda: _Path(path=tokenizer.run(d.vocab_size, prepared=layout.prepared, out_dir=layout.tokenizer)),
    )
    model_configs = {  # each model's cache key holds only what builds it
        "student": d.model_dump(include={"student", "pretrain", "vocab_size"}),
        "teacher": d.model_dump(
            include={"teacher", "pretrain", "teacher_pretrain_epochs", "teacher_sft", "vocab_size"}
        ),
    }
    for which, out in (("student", layout.student_base), ("teacher", layout.teacher)):
        run_stage(
            f"demo-{which}",
            config=model_configs[which],
            inputs=[layout.tokenizer, layout.prepared],
            code=code_hash("demo/models.py", "finetune.py"),
            out_dir=out,
            parent_run_id=parent,
            fn=lambda which=which, out=out: models.build(
                which, d, tokenizer_dir=layout.tokenizer, prepared=layout.prepared, out_dir=out, seed=seed
            ),
            artifacts=("loss_curve.png",),
        )
    run_stage(
        "demo-teacher-onnx",
        config={},
        inputs=[layout.teacher],
        code=code_hash("quantize.py"),
        out_dir=layout.teacher_onnx,
        parent_run_id=parent,
        fn=lambda: _Path(path=export_onnx(layout.teacher, layout.teacher_onnx)),
    )


def prepare(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    from components import data

    raw = layout.raw
    return run_stage(
        "prepare",
        config=params.prepare,
        inputs=[raw],
        code=code_hash("data.py", "pii.py", "tasks"),
        out_dir=layout.prepared,
        parent_run_id=parent,
        artifacts=("rejects.jsonl",),
        fn=lambda: data.run(
            params.prepare,
            labelled=raw / "seed.jsonl",
            unlabelled=raw / "pool.jsonl",
            test=raw / "test.jsonl",
            out_dir=layout.prepared,
            seed=params.project.seed,
        ),
    )


@task(name="prepare")
def prepare_task(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    return prepare(params, layout, parent)


@task(name="synthesize")
def synthesize(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    from components import synthesize as synth

    cfg = _teacher_paths(params, layout).synthesize
    p = layout.prepared
    inputs = [p / "train.jsonl", p / "pool.jsonl", p / "test.jsonl"] + (
        [Path(cfg.teacher.serve_local)] if getattr(cfg.teacher, "serve_local", None) else []
    )
    return run_stage(
        "synthesize",
        config=cfg,
        inputs=inputs,
        code=code_hash("synthesize.py", "teacher", "tasks", "dedup.py", "pii.py", "inference.py", "serve"),
        out_dir=layout.synthetic,
        parent_run_id=parent,
        artifacts=("rejects.jsonl",),
        fn=lambda: synth.run(
            cfg,
            train=p / "train.jsonl",
            pool=p / "pool.jsonl",
            test=p / "test.jsonl",
            out_dir=layout.synthetic,
            cache_path=layout.state / "teacher_cache.sqlite",
            seed=params.project.seed,
        ),
    )


@task(name="finetune")
def finetune(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    from components import finetune as ft

    base = resolve_model_path(params.finetune.base_model, layout.root)
    inputs = [layout.synthetic / "train.jsonl", layout.prepared / "val.jsonl"] + (
        [Path(base)] if Path(base).exists() else []
    )
    return run_stage(
        "finetune",
        config=params.finetune,
        inputs=inputs,
        code=code_hash("finetune.py", "tasks"),
        out_dir=layout.student,
        parent_run_id=parent,
        artifacts=("loss_curve.png", "log_history.json"),
        fn=lambda: ft.run(
            params.finetune,
            train=layout.synthetic / "train.jsonl",
            val=layout.prepared / "val.jsonl",
            base_model=base,
            out_dir=layout.student,
            seed=params.project.seed,
        ),
    )


@task(name="quantize")
def quantize(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    from components import quantize as q

    return run_stage(
        "quantize",
        config=params.quantize,
        inputs=[layout.student],
        code=code_hash("quantize.py"),
        out_dir=layout.student_onnx,
        parent_run_id=parent,
        fn=lambda: q.run(params.quantize, model_dir=layout.student, out_dir=layout.student_onnx),
    )


@task(name="evaluate")
def evaluate(params: Params, layout: Layout, parent: str) -> dict[str, Any]:
    from components import evaluate as ev
    from components.inference import ChatModel
    from components.tasks import ticket_triage as task
    from components.teacher.chat import TeacherChat

    out = layout.reports / "eval"
    int8 = layout.student_onnx / "int8"
    teacher_cfg = _teacher_paths(params, layout).synthesize.teacher

    def run() -> ev.EvaluateResult:
        models = {
            "student": ev.Candidate(chat=ChatModel.load(layout.student), folder=layout.student),
            "student_int8": ev.Candidate(chat=ChatModel.load(int8), folder=int8),
        }
        if not params.evaluate.evaluate_teacher:
            return ev.run(params.evaluate, test=layout.prepared / "test.jsonl", models=models, out_dir=out)
        with TeacherChat.open(teacher_cfg) as teacher:
            teacher_candidate = ev.Candidate(chat=teacher, prompt=task.build_teacher_messages)
            return ev.run(
                params.evaluate,
                test=layout.prepared / "test.jsonl",
                models={"teacher": teacher_candidate, **models},
                out_dir=out,
            )

    return run_stage(
        "evaluate",
        config=params.evaluate,
        inputs=[layout.prepared / "test.jsonl", layout.student, int8],
        code=code_hash("evaluate.py", "inference.py", "tasks"),
        out_dir=out,
        parent_run_id=parent,
        artifacts=("metrics.json", "comparison.csv"),
        fn=run,
    )


@task(name="gate-and-register")
def gate_and_register(params: Params, layout: Layout, metrics: dict[str, float]) -> dict[str, Any]:
    """Check the ``poc`` gates on the int8 model; if they pass, register it and point ``poc`` at it."""
    from components import registry
    from components.gates import decide

    decision = decide(metrics, None, load_gates().poc, stage="poc")
    out: dict[str, Any] = decision.model_dump()
    if decision.passed:
        name, model_dir = params.project.registered_model, layout.student_onnx / "int8"
        holder = registry.alias_version(name, "poc")
        if holder is not None and registry.version_sha256(name, holder) == sha256_tree(model_dir):
            out |= {"version": holder, "unchanged": True}  # a rerun of the same model: no duplicate version
            return out
        version = registry.register(model_dir, name, metrics)
        registry.set_alias(name, "poc", version)
        out["version"] = version
    return out


@flow(name="slmops-pipeline", log_prints=True)
def pipeline(profile: str = "demo", work_dir: str = ".") -> dict[str, Any]:
    import mlflow

    params = load_params(profile)
    layout = Layout(root=Path(work_dir).resolve())
    experiment_id = tracking(layout.root, params.project.experiment)
    with mlflow.start_run(run_name=f"pipeline-{profile}") as parent_run:
        parent = parent_run.info.run_id
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params.model_dump(mode="json")).items()})
        mlflow.set_tag("profile", profile)
        if params.finetune.base_model == "models/student_base":  # the offline demo's own base model
            build_demo(params, layout, parent)
        else:
            prepare_task(params, layout, parent)
        synthesize(params, layout, parent)
        finetune(params, layout, parent)
        quantize(params, layout, parent)
        result = evaluate(params, layout, parent)
        for model_name, values in result["metrics"].items():
            mlflow.log_metrics({f"{model_name}.{k}": v for k, v in values.items()})
        mlflow.log_table(_comparison_table(result["metrics"]), artifact_file="eval/comparison.json")
        mlflow.log_artifacts(str(layout.reports / "eval"), artifact_path="eval")
        decision = gate_and_register(params, layout, result["metrics"]["student_int8"])
        mlflow.set_tag("poc_gate", "passed" if decision["passed"] else "failed")
        if params.dvc.commit:
            from flows.versioning import dvc_commit_and_push

            lock = dvc_commit_and_push(layout.root)
            if lock is not None:
                mlflow.log_artifact(str(lock))
    summary = {
        "run_id": parent,
        "experiment_id": experiment_id,
        "metrics": result["metrics"],
        "gate": decision,
        "reports": str(layout.reports),
    }
    print(json.dumps(summary, indent=2))
    return summary


def _teacher_paths(params: Params, layout: Layout) -> Params:
    """Resolve a relative ``serve_local`` model folder against the work dir."""
    from components.teacher import resolve_local

    teacher = resolve_local(params.synthesize.teacher, layout.root)
    return params.model_copy(update={"synthesize": params.synthesize.model_copy(update={"teacher": teacher})})


def _comparison_table(metrics: dict[str, dict[str, float]]) -> dict[str, list]:
    columns = sorted({k for m in metrics.values() for k in m})
    return {"model": list(metrics), **{c: [metrics[m].get(c) for m in metrics] for c in columns}}


class _Counts(BaseModel):
    counts: dict[str, int]


class _Path(BaseModel):
    path: Path


if __name__ == "__main__":
    import sys

    pipeline(profile=sys.argv[1] if len(sys.argv) > 1 else "demo")
