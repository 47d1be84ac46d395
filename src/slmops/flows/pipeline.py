"""The flows: ``demo_build`` (the offline stand-ins) and ``pipeline`` (prepare -> ... -> gate + register).

Usage:
    slmops demo build --profile demo     # generated data, tokenizer, tiny base model (only the demo needs this)
    slmops run --profile demo            # the pipeline on whatever data:, task:, base_model and teacher say

Every stage is one entry of the registry in ``src/slmops/flows/stages.py``, run here as a Prefect task and logged as a
nested MLflow run under one parent run; ``dvc.yaml`` runs the same stages (``make repro``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from slmops.config import Params, gates_file, load_gates, load_params, resolve_profile
from slmops.flows.runner import log_dataset, run_stage
from slmops.flows.runtime import tracking
from slmops.flows.stages import DEMO, PIPELINE, STAGES, Ctx
from slmops.io import flatten, sha256_tree


@task(name="stage", cache_policy=NO_CACHE)
def stage_task(name: str, ctx: Ctx, parent: str | None) -> dict[str, Any]:
    return run_stage(STAGES[name], ctx, parent)


def _run_stages(stages, ctx: Ctx, parent: str) -> dict[str, dict[str, Any]]:
    return {s.name: stage_task.with_options(name=s.name)(s.name, ctx, parent) for s in stages}


@flow(name="slmops-demo-build")
def demo_build(profile: str | None = None, work_dir: str = ".") -> dict[str, Any]:
    """Offline stand-ins for what real users bring or download: data, a tokenizer, a student base model."""
    import mlflow

    ctx = Ctx(load_params(profile, project=Path(work_dir)), Path(work_dir).resolve())
    profile = resolve_profile(profile, ctx.root) or "default"  # what ran, for the run's name and tags
    tracking(ctx.root, ctx.params.project.experiment)
    with mlflow.start_run(run_name=f"demo-build-{profile}") as run:
        mlflow.set_tag("profile", profile)
        return _run_stages(DEMO, ctx, run.info.run_id)


@task(name="gate-and-register", cache_policy=NO_CACHE)
def gate_and_register(
    ctx: Ctx, metrics: dict[str, dict[str, float]], parity: dict[str, Any], challenge: bool = False
) -> dict[str, Any]:
    """Check parity (trained -> ... -> served) and the ``poc`` gates on every quantized form; register the smallest
    form that passes and point ``poc`` at it. Failing parity registers nothing, naming the step that diverged.

    With ``challenge`` (a retrain), a model that differs from the ``poc`` champion must also beat it on the same
    gold and recent-traffic rows (``slmops/flows/promote.py``); a winner then moves on as far as
    ``loop.auto_promote_to``.
    The other forms' metrics are in the same MLflow run (``student_<form>.*``), so the size/quality trade-off
    is visible per run."""
    from slmops.registry import aliases as registry

    params, gates = ctx.params, load_gates(gates_file(ctx.params, ctx.root))
    form, decision, parity_decision = _choose_form(params, metrics, parity, gates)
    out: dict[str, Any] = decision.model_dump() | {"form": form}
    out |= {"passed": decision.passed and parity_decision.passed, "reasons": decision.reasons + parity_decision.reasons}
    if not out["passed"]:
        return out
    name, model_dir = params.model_name, ctx.layout.student_onnx / form
    holder = registry.alias_version(name, "poc")
    if holder is not None and registry.version_sha256(name, holder) == sha256_tree(model_dir):
        return out | {"version": holder, "unchanged": True}  # a rerun of the same model: no duplicate version
    if challenge and holder is not None:
        from slmops.flows.promote import challenge_champion

        result = challenge_champion(ctx, f"student_{form}")
        out["challenge"] = result
        if not result["decision"]["passed"]:
            lost = [f"challenger lost to champion v{holder}: {r}" for r in result["decision"]["reasons"]]
            return out | {"passed": False, "reasons": lost}
    version = registry.register(model_dir, name, metrics[f"student_{form}"], ctx.task)
    registry.set_alias(name, "poc", version)
    keep_champion(ctx, version)
    out["version"] = version
    if challenge:
        from slmops.flows.promote import auto_promote

        out["promoted"] = auto_promote(ctx)
    return out


def keep_champion(ctx: Ctx, version: str) -> None:
    """Keep the new ``poc`` holder's trained weights, so a retrain can start from them (``loop.init_from``)."""
    import json
    import shutil

    target = ctx.layout.champion
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(ctx.layout.student, staging, ignore=shutil.ignore_patterns("adapter", "checkpoint-*", "active"))
    (staging / "champion.json").write_text(json.dumps({"version": version, "name": ctx.params.model_name}))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def _choose_form(params: Params, metrics: dict[str, dict[str, float]], parity: dict[str, Any], gates):
    """The smallest quantized form that passes the ``poc`` gates and its own parity steps (else
    ``quantize.weight_type``), with both decisions."""
    from slmops.evaluate.parity import ParityFigures, decide_parity
    from slmops.export.quantize import choose_candidate
    from slmops.registry.gates import decide

    figures = ParityFigures.model_validate(parity)
    forms = {form: metrics[f"student_{form}"] for form in params.quantize.forms}
    faithful = {f: m for f, m in forms.items() if decide_parity(figures, gates.parity, f).passed}
    chosen = choose_candidate(
        faithful, {f: m.get("size_mb", 0.0) for f, m in faithful.items()}, lambda m: decide(m, None, gates.poc).passed
    )
    form = chosen or params.quantize.weight_type
    return form, decide(forms[form], None, gates.poc, stage="poc"), decide_parity(figures, gates.parity, form)


@flow(name="slmops-pipeline")
def pipeline(
    profile: str | None = None, work_dir: str = ".", overrides: list[str] | None = None, challenge: bool = False
) -> dict[str, Any]:
    """Every stage, then gates, parity and registration. ``challenge``: the new model must beat the ``poc``
    champion on the same rows before it is registered (what a retrain does, see ``src/slmops/flows/loop.py``)."""
    import mlflow

    params = load_params(profile, project=Path(work_dir), overrides=overrides or [])
    ctx = Ctx(params, Path(work_dir).resolve())
    profile = resolve_profile(profile, ctx.root) or "default"  # what ran, for the run's name and tags
    experiment_id = tracking(ctx.root, params.project.experiment)
    with mlflow.start_run(run_name=f"{'retrain' if challenge else 'pipeline'}-{profile}") as parent_run:
        parent = parent_run.info.run_id
        _log_params(params, profile)
        if overrides:
            mlflow.set_tag("overrides", " ".join(overrides)[:5000])
        results = _run_stages(PIPELINE, ctx, parent)
        metrics = results["evaluate"]["metrics"]
        for model_name, values in metrics.items():
            mlflow.log_metrics({f"{model_name}.{k}": v for k, v in values.items()})
        mlflow.log_metrics(results["parity"]["agreement"])  # parity.<step>.*, every form's beside its metrics
        _log_evaluation(ctx, metrics)
        decision = gate_and_register(ctx, metrics, results["parity"]["figures"], challenge)
        mlflow.set_tags({"poc_gate": "passed" if decision["passed"] else "failed", "served_form": decision["form"]})
        if decision.get("version"):
            mlflow.set_tag("registered_version", decision["version"])
        if params.dvc.commit:
            from slmops.flows.versioning import dvc_commit_and_push, write_dvc_files

            if (ctx.root / ".dvc").is_dir():  # params.yaml and dvc.yaml say what this run ran
                write_dvc_files(params, profile or "default", ctx.root)
            lock = dvc_commit_and_push(ctx.root)
            if lock is not None:
                mlflow.log_artifact(str(lock))
        if ctx.layout.console_log.exists():  # the full log: library output, warnings, tracebacks
            mlflow.log_artifact(str(ctx.layout.console_log), artifact_path="logs")
    return {
        "run_id": parent,
        "experiment_id": experiment_id,
        "teacher_calls": sum(results[s].get("teacher_calls", 0) for s in ("label_traffic", "synthesize")),
        "metrics": metrics,
        "gate": decision,
        "reports": str(ctx.layout.reports),
    }


def _log_params(params: Params, profile: str | None) -> None:
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in flatten(params.model_dump(mode="json")).items()})
    mlflow.set_tags({"profile": profile, "task": params.task})


def _log_evaluation(ctx: Ctx, metrics: dict[str, dict[str, float]]) -> None:
    """The parent run shows what was trained on and tested on (datasets), the side-by-side metrics, and every
    model's per-example predictions as tables the MLflow UI can compare across runs."""
    import mlflow
    import pandas as pd

    from slmops.io import load_jsonl

    log_dataset(ctx.layout.synthetic / "train.jsonl", "training")
    log_dataset(ctx.layout.prepared / "test.jsonl", "evaluation")
    log_dataset(ctx.layout.traffic_labelled / "recent.jsonl", "evaluation")
    mlflow.log_table(_comparison_table(metrics), artifact_file="eval/comparison.json")
    for model in metrics:  # recent_<name>: the same model on the recent-traffic eval set (eval/recent/)
        recent = model.startswith("recent_")
        folder = ctx.layout.reports / "eval" / ("recent" if recent else "")
        rows = load_jsonl(folder / f"predictions_{model.removeprefix('recent_')}.jsonl")
        mlflow.log_table(pd.json_normalize(rows), artifact_file=f"eval/predictions_{model}.json")
    mlflow.log_artifacts(str(ctx.layout.reports / "eval"), artifact_path="eval")


def _comparison_table(metrics: dict[str, dict[str, float]]) -> dict[str, list]:
    columns = sorted({k for m in metrics.values() for k in m})
    return {"model": list(metrics), **{c: [metrics[m].get(c) for m in metrics] for c in columns}}
