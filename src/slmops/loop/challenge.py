"""Champion vs challenger in one run: the champion answers the same gold and recent-traffic rows the challenger
was just evaluated on, and ``src/slmops/loop/compare.py`` decides.

Usage:
    from slmops.loop.challenge import run
    result = run(params.loop.compare, params.evaluate, task=task, champion=chat_model, champion_version="3",
                 challenger="student_int8", eval_dir=Path("reports/eval"), out_dir=Path("reports/challenge"))
    result.decision.passed, result.decision.reasons

The challenger's answers are the evaluate stage's ``predictions_<form>.jsonl`` (gold) and
``recent/predictions_<form>.jsonl`` (recent traffic); the champion is evaluated here on exactly those rows
(same inputs, same order, checked). Writes ``decision.json``, ``per_example.jsonl`` (every row: input,
reference, both answers, who was right) and the champion's predictions and confusion matrices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slmops.config import CompareConfig, EvaluateConfig
from slmops.evaluate.stage import Candidate
from slmops.evaluate.stage import run as evaluate_run
from slmops.io import load_jsonl, write_jsonl
from slmops.loop.compare import ChallengerDecision, correctness, decide_challenger, judged_field
from slmops.tasks import Task


class ChallengeResult(BaseModel):
    decision: ChallengerDecision
    champion_version: str
    challenger: str
    field: str | None  # the enum field judged per example (None: the whole answer)
    metrics: dict[str, dict[str, float]]  # "champion" / "champion_recent": the champion's metrics on both sets
    out_dir: Path


def _rows(predictions: list[dict]) -> list[dict]:
    return [{"input": p["input"], "expected": p["expected"]} for p in predictions]


def _per_example(task: Task, field: str | None, split: str, champion: list[dict], challenger: list[dict]) -> list[dict]:
    """One row per example: both answers side by side and who got it right."""
    if [p["input"] for p in champion] != [p["input"] for p in challenger]:
        raise ValueError(f"{split}: champion and challenger were not evaluated on the same rows")
    expected = [p["expected"] for p in challenger]
    right_a = correctness(task, [p["output"] for p in champion], expected, field)
    right_b = correctness(task, [p["output"] for p in challenger], expected, field)
    return [
        {
            "set": split,
            "input": b["input"],
            "reference": b["expected"].get(field) if field else json.dumps(b["expected"], ensure_ascii=False),
            "champion": (a["predicted"] or {}).get(field) if field else a["output"],
            "challenger": (b["predicted"] or {}).get(field) if field else b["output"],
            "champion_right": ra,
            "challenger_right": rb,
            "changed": ra != rb,
        }
        for a, b, ra, rb in zip(champion, challenger, right_a, right_b, strict=True)
    ]


def _evaluate_champion(cfg: EvaluateConfig, task: Task, chat: Any, rows: list[dict], out_dir: Path) -> tuple:
    """The champion's metrics and predictions on ``rows`` (written to a temporary JSONL the evaluator reads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "rows.jsonl"
    write_jsonl(source, rows)
    whole = cfg.model_copy(update={"max_examples": len(rows)})  # the same rows, already capped by evaluate
    result = evaluate_run(whole, task=task, test=source, models={"champion": Candidate(chat=chat)}, out_dir=out_dir)
    source.unlink()
    return result.metrics["champion"], load_jsonl(out_dir / "predictions_champion.jsonl")


def run(
    cfg: CompareConfig,
    evaluate_cfg: EvaluateConfig,
    *,
    task: Task,
    champion: Any,
    champion_version: str,
    challenger: str,
    eval_dir: Path,
    out_dir: Path,
) -> ChallengeResult:
    field = judged_field(task, cfg)
    sets = {
        "gold": eval_dir / f"predictions_{challenger}.jsonl",
        "recent": eval_dir / "recent" / f"predictions_{challenger}.jsonl",
    }
    table, pairs, metrics = [], {"gold": [], "recent": []}, {}
    for split, path in sets.items():
        ours = load_jsonl(path) if path.exists() else []
        if not ours:
            continue
        values, theirs = _evaluate_champion(evaluate_cfg, task, champion, _rows(ours), out_dir / split)
        metrics["champion" if split == "gold" else "champion_recent"] = values
        rows = _per_example(task, field, split, theirs, ours)
        table += rows
        pairs[split] = [(r["champion_right"], r["challenger_right"]) for r in rows]
    decision = decide_challenger(pairs["gold"], pairs["recent"], cfg)
    write_jsonl(out_dir / "per_example.jsonl", table)
    result = ChallengeResult(
        decision=decision,
        champion_version=champion_version,
        challenger=challenger,
        field=field,
        metrics=metrics,
        out_dir=out_dir,
    )
    (out_dir / "decision.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    return result
