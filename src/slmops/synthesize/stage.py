"""Synthesize stage: the teacher labels the unlabelled pool and writes new inquiries from seed examples.

Usage:
    slmops stage synthesize --profile demo

Before any prompt leaves the machine, PII is masked and every row that is a near-duplicate of a test
input (MinHash, ``near_dup_threshold``) is dropped, gold rows included. Every teacher answer is then
validated (``src/slmops/teacher/validate.py`` lists the reject reasons); rejected ones are counted by
reason and written to ``rejects.jsonl``, never to ``train.jsonl``. If the reject rate passes
``max_reject_rate`` the stage fails with the breakdown. Answers are cached as they land (SQLite), so a
rerun after a crash or a kill makes no call for an answered prompt. Accepted rows carry provenance; the
manifest records content hashes, class balance (capped at ``max_class_share``), token usage and cost.

New inputs (``augment.py``) are asked for over an attribute grid (``grid.py``), kept only when novel and when
the teacher, labelling them blind, agrees with the class asked for (``filtered``); their diversity is
reported (``diversity``: distinct-1/2, coverage of the test inputs, rows per grid cell).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, model_validator

from slmops.config import PIIConfig, SynthesizeConfig
from slmops.io import load_jsonl, write_jsonl, write_manifest
from slmops.synthesize.augment import augment, augment_asks, plan_asks
from slmops.synthesize.contrast import contrast, contrast_asks
from slmops.synthesize.diversity import diversity_figures
from slmops.tasks import Task
from slmops.teacher import open_teacher
from slmops.teacher.cache import ResponseCache
from slmops.teacher.labeller import Labeller, StageProgress
from slmops.text import pii
from slmops.text.dedup import NearDupIndex, signature


class Provenance(BaseModel):
    teacher_id: str
    model_version: str
    template_hash: str  # sha256 (16 hex) of the prompt templates the teacher saw
    sampling: dict[str, Any]
    created_at: str
    cell: dict[str, str | None] | None = None  # a self-instruct row's grid cell: its class and attributes
    contrast_of: str | None = None  # a contrast row's source row id (synthesize/contrast.py)


class SyntheticExample(BaseModel):
    """One row of ``data/synthetic/train.jsonl``: a gold row, or a teacher row with its provenance."""

    id: str
    input: str
    expected: dict[str, Any]  # checked against the task's schema before the file is written
    # teacher_contrast: synthesize/contrast.py; teacher_active: train/active.py
    source: Literal["gold", "teacher_label", "teacher_augment", "teacher_contrast", "teacher_active", "traffic"]
    provenance: Provenance | None = None
    traffic: dict[str, Any] | None = None  # a harvested traffic row's log provenance (src/slmops/loop/harvest.py)

    @model_validator(mode="after")
    def _teacher_rows_have_provenance(self) -> SyntheticExample:
        if self.source != "gold" and self.provenance is None:
            raise ValueError(f"{self.id}: a {self.source} row needs provenance")
        return self


class RejectRateExceeded(RuntimeError):
    pass


class PIILeak(RuntimeError):
    pass


class SynthesizeResult(BaseModel):
    out_file: Path
    counts: dict[str, int]
    rejected: dict[str, int]
    reject_rate: float
    decontaminated: dict[str, int]  # rows dropped as near-duplicates of a test input, by file
    dropped_for_balance: dict[str, int]
    class_balance: dict[str, float]
    class_warnings: list[str]
    cache_hits: int
    teacher_calls: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost: float
    filtered: dict[str, int] = {}  # new inputs the novelty and agreement filters rejected (also in rejected)
    diversity: dict[str, float] = {}  # distinct-1/2, test coverage, rows per grid cell (synthesize/diversity.py)

    # What this execution spent: a rerun answered from the teacher cache spends nothing. Kept out of the output
    # folder's manifest (flows/runner.py), so a rerun that writes the same rows leaves the stage's outputs as they were.
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "cache_hits",
        "teacher_calls",
        "prompt_tokens",
        "completion_tokens",
        "estimated_cost",
    )


__all__ = ["augment_asks", "run"]  # augment_asks lives in augment.py; importable from here as before

KEEP = ("gold", "traffic")  # sources class balancing never drops: human labels, and what users actually asked


def cap_classes(
    rows: list[dict], max_share: float, rng: random.Random, class_of: Callable[[dict], str | None]
) -> tuple[list[dict], Counter[str]]:
    """Drop teacher rows (never gold or traffic) of over-represented classes until none exceeds ``max_share``."""
    dropped: Counter[str] = Counter()
    while rows:
        counts = Counter(class_of(r["expected"]) for r in rows)
        over = {c: n - int(max_share * len(rows)) for c, n in counts.items() if n > max_share * len(rows)}
        droppable = [i for i, r in enumerate(rows) if class_of(r["expected"]) in over and r["source"] not in KEEP]
        if not over or not droppable:
            return rows, dropped
        rng.shuffle(droppable)
        cut = set()
        for i in droppable:
            klass = class_of(rows[i]["expected"])
            if over[klass] > 0:
                over[klass] -= 1
                cut.add(i)
        dropped.update(str(class_of(rows[i]["expected"])) for i in cut)
        rows = [r for i, r in enumerate(rows) if i not in cut]
    return rows, dropped


def decontaminate(
    cfg: SynthesizeConfig,
    train: Path,
    pool: Path,
    test: Path,
    traffic: Path | None = None,
    recent: Path | None = None,
    pii_cfg: PIIConfig | None = None,
) -> tuple[dict[str, list[dict]], Counter[str], NearDupIndex, NearDupIndex]:
    """Drop every gold, pool and labelled-traffic row that is a near-duplicate of a test input (the gold test
    set, and the recent-traffic eval set when given), before anything is sent.

    PII is masked again here (prepare already did) so nothing unmasked can leave the machine in a prompt.
    Returns the kept rows by file, the dropped counts, and the test and train near-duplicate indexes.
    """
    test_index = NearDupIndex(cfg.near_dup_threshold)
    for path in (test, recent):
        for row in load_jsonl(path) if path is not None and path.exists() else []:
            test_index.add(row["input"])
    dropped: Counter[str] = Counter()
    kept: dict[str, list[dict]] = {"gold": [], "pool": [], "traffic": []}
    train_index = NearDupIndex(cfg.near_dup_threshold)  # everything trainable: new inputs must differ from it
    sources = [("gold", train), ("pool", pool)] + ([("traffic", traffic)] if traffic and traffic.exists() else [])
    for name, path in sources:
        for row in load_jsonl(path):
            row = {**row, "input": pii.mask(row["input"], cfg=pii_cfg)}
            sig = signature(row["input"])
            if test_index.find(row["input"], sig) is not None:
                dropped[name] += 1
            else:
                kept[name].append(row)
                train_index.add(row["input"], sig)
    return kept, dropped, test_index, train_index


@pii.remembering()  # the stage scans the same text for PII several times: from memory after the first
def run(
    cfg: SynthesizeConfig,
    *,
    task: Task,
    train: Path,
    pool: Path,
    test: Path,
    out_dir: Path,
    cache_path: Path,
    seed: int = 42,
    traffic: Path | None = None,
    recent: Path | None = None,
    traffic_repeat: int = 1,
    pii_cfg: PIIConfig | None = None,
) -> SynthesizeResult:
    """Pool labels and self-instruct rows from the teacher, plus gold and (``traffic``) labelled harvested
    traffic, each row ``traffic_repeat`` times (a few hundred new rows beside thousands of old ones would barely
    move the model), none of them near any test or ``recent`` eval input (see the module docstring).
    ``pii_cfg`` (``params.pii``) masks every prompt before it is sent and every teacher answer kept."""
    rng = random.Random(seed)
    kept, decontaminated, test_index, train_index = decontaminate(cfg, train, pool, test, traffic, recent, pii_cfg)
    gold, unlabelled = kept["gold"], kept["pool"][: cfg.max_unlabelled]
    asks, grid_size = plan_asks(task, gold, cfg, rng, seed)
    test_inputs = [r["input"] for path in (test, recent) if path and path.exists() for r in load_jsonl(path)]
    references = ([r["input"] for rows in kept.values() for r in rows], test_inputs)
    progress = StageProgress(len(unlabelled) + len(asks))
    cache = ResponseCache(cache_path)
    try:
        with open_teacher(cfg.teacher) as teacher:
            labeller = Labeller(cfg, task, teacher, cache, progress, pii_cfg)
            labels = labeller.label([r["input"] for r in unlabelled])  # 1. label the pool
            rows = [(r["id"], r["input"], *lab) for r, lab in zip(unlabelled, labels, strict=True)]
            accepted = labeller.accepted_rows(rows, "teacher_label", cfg.sampling)
            written, filtered = augment(labeller, asks, test_index, train_index, references)  # 2. self-instruct
            accepted += written
            if sources := contrast_asks(task, gold + accepted, cfg.contrast_rows, seed):  # 3. contrast rows
                progress.grow(len(sources))
                contrasted, contrast_filtered = contrast(labeller, sources, test_index, test_inputs)
                accepted += contrasted
                filtered |= contrast_filtered
    finally:
        progress.close()
        cache.close()
    asked = len(unlabelled) + len(asks) + len(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "rejects.jsonl", labeller.rejects)
    reject_rate = sum(labeller.rejected.values()) / asked if asked else 0.0
    if reject_rate > cfg.max_reject_rate:
        raise RejectRateExceeded(
            f"teacher reject rate {reject_rate:.1%} > max_reject_rate {cfg.max_reject_rate:.0%}; "
            f"by reason: {dict(labeller.rejected)}; see {out_dir / 'rejects.jsonl'}"
        )
    traffic_rows = [r | {"id": f"{r['id']}#{k}"} if k else r for r in kept["traffic"] for k in range(traffic_repeat)]
    rows, dropped = [{**r, "source": "gold"} for r in gold] + traffic_rows + accepted, Counter()
    if task.stratify_by:  # a task with no enum field to balance keeps every accepted row
        rows, dropped = cap_classes(rows, cfg.max_class_share, rng, task.class_of)
    _write_checked(task, rows, out_dir / "train.jsonl", pii_cfg)
    result = _result(cfg, task, labeller, rows, out_dir, asked, reject_rate, decontaminated, dropped)
    result.filtered = filtered
    result.diversity = _diversity(cfg, rows, test_inputs, grid_size)
    fields = result.model_dump(mode="json", exclude=set(result.RUN_FIELDS))
    write_manifest(out_dir, stage="synthesize", currency=cfg.cost.currency, **fields)
    return result


def _write_checked(task: Task, rows: list[dict], path: Path, pii_cfg: PIIConfig | None = None) -> None:
    """The file's contract, checked on every row before it is written: schema, provenance, no PII left."""
    leaks = [
        r["id"]
        for r in rows
        if pii.find_pii(r["input"], pii_cfg)
        or any(pii.find_pii(str(r["expected"].get(f, "")), pii_cfg) for f in task.text_fields)
    ]
    if leaks:  # cannot happen while masking is applied above; checked because the cost of a leak is high
        raise PIILeak(f"unmasked PII in {len(leaks)} synthetic rows, e.g. {leaks[:5]}; nothing was written")
    for row in rows:
        SyntheticExample.model_validate(row)
        task.Label.model_validate(row["expected"]) if row["source"] != "gold" else task.validate_expected(
            row["expected"]
        )
    write_jsonl(path, rows)


def _diversity(cfg: SynthesizeConfig, rows: list[dict], test_inputs: list[str], grid_size: int) -> dict[str, float]:
    written = [r for r in rows if r["source"] == "teacher_augment"]
    return diversity_figures(
        [r["input"] for r in written],
        [r["input"] for r in rows],
        test_inputs,
        [r["provenance"].get("cell") or {} for r in written],
        threshold=cfg.coverage_similarity,
        grid_size=grid_size,
    )


def _result(cfg, task: Task, labeller: Labeller, rows, out_dir, asked, reject_rate, decontaminated, dropped):
    classes = Counter(str(task.class_of(r["expected"])) for r in rows)
    balance = {c: round(n / len(rows), 4) for c, n in sorted(classes.items())} if task.stratify_by else {}
    warnings = [f"{c}: {share:.1%} < min_class_share" for c, share in balance.items() if share < cfg.min_class_share]
    usage, price = labeller.usage, cfg.cost
    return SynthesizeResult(
        out_file=out_dir / "train.jsonl",
        counts={**Counter(r["source"] for r in rows), "asked": asked, "total": len(rows)},
        rejected=dict(labeller.rejected),
        reject_rate=reject_rate,
        decontaminated=dict(decontaminated),
        dropped_for_balance=dict(dropped),
        class_balance=balance,
        class_warnings=warnings,
        cache_hits=labeller.cache_hits,
        teacher_calls=usage["calls"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        estimated_cost=round(
            usage["prompt_tokens"] / 1000 * price.prompt_per_1k_tokens
            + usage["completion_tokens"] / 1000 * price.completion_per_1k_tokens,
            6,
        ),
    )
