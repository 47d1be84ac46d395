"""The continuous-improvement loop's flows: a retrain (harvest -> teacher labels -> train -> champion vs
challenger -> promote) that only one process runs at a time per work dir.

Usage:
    slmops retrain --profile demo          # what the weekly schedule and a drift trigger run
    slmops monitor --profile demo          # drift -> trigger policy -> retrain (flows/monitor.py)

A retrain is the pipeline flow with ``challenge=True``: the harvest and label_traffic stages bring the logged
traffic in, and the new model is registered only when it beats the ``poc`` champion on the same gold and
recent-traffic rows (``components/challenge.py``). A winner moves on through the pilot/prod gates as far as
``loop.auto_promote_to`` allows; a running server picks the new ``poc`` holder up by its alias hot reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from components.config import PARAMS_DIR, load_params
from components.trigger import RetrainRunning, TriggerStore, retrain_lock
from flows.stages import Ctx

ORDER = ("poc", "pilot", "prod")


def challenge_champion(ctx: Ctx, challenger: str) -> dict[str, Any]:
    """Evaluate the ``poc`` champion on the challenger's gold and recent-traffic rows, decide, and log the
    comparison to the active MLflow run: the decision, a per-example diff table, both confusion matrices."""
    import mlflow
    import pandas as pd

    from components import challenge, registry
    from components.io import load_jsonl

    p = ctx.params
    champion, version = registry.load_chat_model(p.model_name, "poc")
    out_dir = ctx.layout.reports / "challenge"
    result = challenge.run(
        p.loop.compare,
        p.evaluate,
        task=ctx.task,
        champion=champion,
        champion_version=version,
        challenger=challenger,
        eval_dir=ctx.layout.reports / "eval",
        out_dir=out_dir,
    )
    d = result.decision
    mlflow.set_tags({"challenger": "won" if d.passed else "lost", "champion_version": version})
    mlflow.log_metrics({f"{name}.{k}": v for name, values in result.metrics.items() for k, v in values.items()})
    for split, stats in (("gold", d.gold), ("recent", d.recent)):
        if stats is not None:
            mlflow.log_metrics(
                {f"challenge.{split}.{k}": float(v) for k, v in stats.model_dump().items() if v is not None}
            )
    if d.p_value is not None:
        mlflow.log_metric("challenge.p_value", d.p_value)
    rows = load_jsonl(out_dir / "per_example.jsonl")
    if rows:
        mlflow.log_table(pd.DataFrame(rows), artifact_file="challenge/per_example.json")
    mlflow.log_artifacts(str(out_dir), artifact_path="challenge")
    verdict = "WON" if d.passed else "lost"
    print(f"  challenger {verdict} against champion v{version}" + ("" if d.passed else f": {'; '.join(d.reasons)}"))
    return result.model_dump(mode="json")


def auto_promote(ctx: Ctx) -> list[dict[str, Any]]:
    """Move the new ``poc`` holder up through the pilot and prod gates, as far as ``loop.auto_promote_to``."""
    from flows.promote import promote

    decisions = []
    for stage in ORDER[1 : ORDER.index(ctx.params.loop.auto_promote_to) + 1]:
        decision = promote(ctx.params, ctx.root, stage, PARAMS_DIR / ctx.params.gates)
        decisions.append(decision)
        print(
            f"  promote to {stage}: {'passed' if decision['passed'] else 'failed: ' + '; '.join(decision['reasons'])}"
        )
        if not decision["passed"]:
            break
    return decisions


@flow(name="slmops-retrain")
def retrain(
    profile: str = "demo", work_dir: str = ".", reason: str = "scheduled", overrides: list[str] | None = None
) -> dict[str, Any]:
    """One retrain under the work dir's retrain lock; a second one while it runs is recorded and skipped.
    ``reason``: why it started (a schedule marks the trigger's cooldown; a drift trigger already did)."""
    from flows.pipeline import pipeline

    params = load_params(profile, overrides=overrides or [])
    ctx = Ctx(params, Path(work_dir).resolve())
    store = TriggerStore(ctx.layout.state / "trigger.json")
    try:
        with retrain_lock(ctx.layout.state / "retrain.lock"):
            if reason == "scheduled":
                store.mark_retrain()
            print(f"retrain ({reason}): harvest -> teacher labels -> train -> champion vs challenger")
            result = pipeline(profile=profile, work_dir=work_dir, overrides=overrides, challenge=True)
    except RetrainRunning as busy:
        decision = store.suppress(str(busy))
        print(decision.line())
        return {"started": False, "reason": decision.reason}
    return {"started": True, "reason": reason, **result}
