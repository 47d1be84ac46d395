"""Promotion: move a registered version poc -> pilot -> prod through that stage's gates.

Usage:
    slmops promote --to pilot
    slmops rollback --stage prod

The decision (passed or not, every reason, both models' metrics) is recorded on the candidate version as
tags ``gate.<stage>`` / ``gate.<stage>.reasons`` and as a JSON artifact ``promotion/<stage>-<time>.json`` in
the run that produced it, then returned for printing. A failed promotion moves no alias. Promotions hold a
file lock in the work dir, and the alias is re-read just before it moves: if another promotion moved it in
the meantime, this one fails instead of overwriting a decision it did not see. Rollbacks take the same
lock, so a rollback and a promotion never interleave.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmops.config import Layout, Params, gates_file, load_gates
from slmops.flows.runtime import tracking
from slmops.flows.stages import Ctx
from slmops.registry import aliases as registry
from slmops.registry.gates import decide

SOURCE = {"pilot": "poc", "prod": "pilot"}


@contextmanager
def promotion_lock(path: Path) -> Iterator[None]:
    """One promotion at a time on this machine (an exclusive ``flock`` on ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def promote(params: Params, work_dir: Path, to: str, gates: Path | None = None) -> dict[str, Any]:
    if to not in SOURCE:
        raise ValueError(f"--to must be one of {sorted(SOURCE)}, got {to!r}")
    tracking(work_dir, params.project.experiment)
    with promotion_lock(Layout(root=work_dir.resolve()).state / "promotion.lock"):
        return _promote(params.model_name, to, gates or gates_file(params, work_dir))


def rollback(params: Params, work_dir: Path, stage: str) -> str:
    """Point ``stage`` back at its previous holder, under the same lock as promotions; returns that version."""
    tracking(work_dir, params.project.experiment)
    with promotion_lock(Layout(root=work_dir.resolve()).state / "promotion.lock"):
        return registry.rollback(params.model_name, stage)


def _promote(name: str, to: str, gates_path: Path) -> dict[str, Any]:
    source = SOURCE[to]
    candidate = registry.alias_version(name, source)
    if candidate is None:
        return {"stage": to, "passed": False, "reasons": [f"no version holds {source!r}: promote to it first"]}
    champion = registry.alias_version(name, to)
    candidate_metrics = registry.version_metrics(name, candidate)
    champion_metrics = registry.version_metrics(name, champion) if champion and champion != candidate else None
    decision = decide(candidate_metrics, champion_metrics, getattr(load_gates(gates_path), to), stage=to)
    result = decision.model_dump() | {
        "candidate": candidate,
        "champion": champion,
        "candidate_metrics": candidate_metrics,
        "champion_metrics": champion_metrics,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision.passed and registry.alias_version(name, to) != champion:
        result["passed"] = False
        result["reasons"] = [f"{to!r} moved while this promotion was deciding; nothing changed, rerun it"]
    _record(name, candidate, to, result)
    if result["passed"]:
        registry.set_alias(name, to, candidate)
    return result


def _record(name: str, version: str, stage: str, result: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, f"gate.{stage}", "passed" if result["passed"] else "failed")
    client.set_model_version_tag(name, version, f"gate.{stage}.reasons", "; ".join(result["reasons"])[:4000] or "-")
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        stamp = result["decided_at"].replace(":", "").replace("-", "")
        client.log_dict(run_id, result, f"promotion/{stage}-{stamp}.json")


ORDER = ("poc", "pilot", "prod")


def challenge_champion(ctx: Ctx, challenger: str) -> dict[str, Any]:
    """Evaluate the ``poc`` champion on the challenger's gold and recent-traffic rows, decide, and log the
    comparison to the active MLflow run: the decision, a per-example diff table, both confusion matrices."""
    import mlflow
    import pandas as pd

    from slmops.io import load_jsonl
    from slmops.loop import challenge
    from slmops.registry import aliases as registry

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

    decisions = []
    for stage in ORDER[1 : ORDER.index(ctx.params.loop.auto_promote_to) + 1]:
        decision = promote(ctx.params, ctx.root, stage)
        decisions.append(decision)
        print(
            f"  promote to {stage}: {'passed' if decision['passed'] else 'failed: ' + '; '.join(decision['reasons'])}"
        )
        if not decision["passed"]:
            break
    return decisions
