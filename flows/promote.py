"""Promotion: move a registered version poc -> pilot -> prod through that stage's gates.

Usage:
    slmops promote --to pilot
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components import registry
from components.config import Params, load_gates
from components.gates import decide
from flows.runtime import tracking

SOURCE = {"pilot": "poc", "prod": "pilot"}


def promote(params: Params, work_dir: Path, to: str) -> dict[str, Any]:
    if to not in SOURCE:
        raise ValueError(f"--to must be one of {sorted(SOURCE)}, got {to!r}")
    tracking(work_dir, params.project.experiment)
    name, source = params.project.registered_model, SOURCE[to]
    candidate = registry.alias_version(name, source)
    if candidate is None:
        return {"stage": to, "passed": False, "reasons": [f"no version holds {source!r}: promote to it first"]}
    champion = registry.alias_version(name, to)
    champion_metrics = registry.version_metrics(name, champion) if champion and champion != candidate else None
    decision = decide(registry.version_metrics(name, candidate), champion_metrics, getattr(load_gates(), to), stage=to)
    result = decision.model_dump() | {"candidate": candidate, "champion": champion}
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, candidate, f"gate.{to}", "passed" if decision.passed else "failed")
    client.set_model_version_tag(name, candidate, f"gate.{to}.reasons", "; ".join(decision.reasons)[:4000] or "-")
    if decision.passed:
        registry.set_alias(name, to, candidate)
    return result
