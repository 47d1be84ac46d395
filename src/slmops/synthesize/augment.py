"""Self-instruct: the teacher writes new inputs per class and grid cell; they are filtered, then labelled blind.

Usage:
    asks, grid_size = plan_asks(task, gold, cfg, seed=42)
    rows, filtered = augment(labeller, asks, test_index, train_index, (train_inputs, test_inputs))

Each ask names a class, a seed example of that class and (``synthesize.attributes``) a cell of the attribute
grid (``grid.py``). An answer passes ``check_new_input`` (copies, near-duplicates, test contamination), then
novelty (``filters.py``), then agreement: the teacher labels it again without being told the class, and a
different class is a ``label_mismatch``. ``filtered`` counts what novelty and agreement rejected; every
reject goes to ``rejects.jsonl``, never to the training file. Kept rows record their cell in provenance.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from slmops.config import SynthesizeConfig
from slmops.io import sha256_text
from slmops.synthesize.filters import novelty_rejects
from slmops.synthesize.grid import assign_cells, attribute_axes, grid_cells
from slmops.tasks import Task
from slmops.teacher.labeller import Labeller
from slmops.teacher.validate import check_new_input
from slmops.text.dedup import NearDupIndex


@dataclass(frozen=True)
class Ask:
    klass: str | None
    example: str
    i: int
    attributes: dict[str, str] = field(default_factory=dict)  # the grid cell, the class aside


def augment_asks(task: Task, gold: list[dict], per_class: int, rng: random.Random) -> list[tuple[str | None, str, int]]:
    """Self-instruct prompts: ``(class, example, i)``, distinct examples where there are enough, so no two asks
    are the same (cached) prompt."""
    if per_class == 0 or task.spec.augment_prompt is None:
        return []
    by_class: dict[str | None, list[str]] = {}
    for r in gold:
        by_class.setdefault(task.class_of(r["expected"]), []).append(r["input"])
    return [
        (c, example, i)
        for c in sorted(by_class, key=str)
        for i, example in enumerate(
            rng.sample(by_class[c], per_class)
            if per_class <= len(by_class[c])
            else rng.choices(by_class[c], k=per_class)
        )
    ]


def plan_asks(
    task: Task, gold: list[dict], cfg: SynthesizeConfig, rng: random.Random, seed: int
) -> tuple[list[Ask], int]:
    """The asks (examples drawn with ``rng``, cells with their own ``seed``ed generator, so switching the grid
    on or off changes no other draw) and the number of cells of the class x attribute grid."""
    asks = augment_asks(task, gold, cfg.augment_per_category, rng)
    axes = attribute_axes(task.spec.synthesis_attributes) if cfg.attributes else {}
    cells = assign_cells([c for c, _, _ in asks], axes, random.Random(f"grid-{seed}"))
    classes = {c for c, _, _ in asks}
    planned = [Ask(c, example, i, cell) for (c, example, i), cell in zip(asks, cells, strict=True)]
    return planned, len(classes) * len(grid_cells(axes))


def cell_of(task: Task, ask: Ask) -> dict[str, str | None]:
    """The row's provenance cell: the class it was written for, then its attributes."""
    return ({task.stratify_by: ask.klass} if task.stratify_by else {}) | ask.attributes


def write_inputs(
    labeller: Labeller,
    asks: Sequence[Ask],
    test_index: NearDupIndex,
    train_index: NearDupIndex,
    references: tuple[Sequence[str], Sequence[str]],
    sampling=None,
) -> tuple[list[tuple[Ask, str]], list[str | None]]:
    """The teacher's new inputs for ``asks`` (``sampling``: ``synthesize.augment_sampling`` unless given) that
    pass the copy, near-duplicate and novelty checks, and each written input's novelty reject reason."""
    task, cfg = labeller.task, labeller.cfg
    requests = [task.build_augment_messages(a.klass, a.example, a.attributes) for a in asks]
    answers = labeller.ask(requests, sampling or cfg.augment_sampling)
    written = []
    for ask, response in zip(asks, answers, strict=True):
        text, reason = check_new_input(task, response, ask.example, train_index, test_index, labeller.pii_cfg)
        if text is None:
            labeller.reject(f"augment-{ask.klass}-{ask.i}", ask.example, reason or "unknown", response)
            continue
        train_index.add(text)
        written.append((ask, text, response))
    novelty = novelty_rejects([t for _, t, _ in written], *references, cfg.novelty_max_similarity)
    kept = []
    for (ask, text, response), reason in zip(written, novelty, strict=True):
        if reason is not None:
            labeller.reject(f"augment-{ask.klass}-{ask.i}", text, reason, response)
        else:
            kept.append((ask, text))
    return kept, novelty


def augment(
    labeller: Labeller,
    asks: Sequence[Ask],
    test_index: NearDupIndex,
    train_index: NearDupIndex,
    references: tuple[Sequence[str], Sequence[str]],
) -> tuple[list[dict], dict[str, int]]:
    """New inputs from ``asks``, filtered and labelled; ``references`` are the training and test inputs."""
    task, cfg = labeller.task, labeller.cfg
    kept, novelty = write_inputs(labeller, asks, test_index, train_index, references)
    labeller.progress.grow(len(kept))
    wanted = [a.klass for a, _ in kept] if task.stratify_by and cfg.agreement else None
    labels = labeller.label([t for _, t in kept], wanted=wanted)
    ids = [f"aug-{sha256_text(t)[:12]}" for _, t in kept]
    rows = [(i, t, *lab) for i, (_, t), lab in zip(ids, kept, labels, strict=True)]
    accepted = labeller.accepted_rows(rows, "teacher_augment", cfg.augment_sampling)
    cells = {i: cell_of(task, a) for i, (a, _) in zip(ids, kept, strict=True)}
    for row in accepted:
        row["provenance"]["cell"] = cells[row["id"]]
    filtered = {
        "novelty": sum(r is not None for r in novelty),
        "agreement": sum(reason == "label_mismatch" for _, reason, _ in labels),
    }
    return accepted, filtered
