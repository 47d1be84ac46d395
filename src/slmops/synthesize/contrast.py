"""Contrast rows: the teacher rewrites a training input, changing as little as it can, so its class becomes another.

Usage:
    asks = contrast_asks(task, rows, cfg.contrast_rows, seed=42)
    rows, filtered = contrast(labeller, asks, test_index, test_inputs)

A pair of near-identical inputs with different labels shows the student which words decide the class, where
rows written from scratch let it learn whatever else goes with each class in the teacher's writing (frames,
length, topics). This is counterfactual augmentation (Kaushik et al., 2020, "Learning the difference that makes
a difference"). Each rewrite passes the self-instruct checks against the test inputs (near-duplicates, novelty),
but not against the training rows, of which it is meant to be a near copy. It must differ from its source, and
the teacher labels it again, blind: a class other than the one asked for is a ``label_mismatch``, rejected.
Kept rows record their source row's id in provenance.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from slmops.io import sha256_text
from slmops.synthesize.filters import novelty_rejects
from slmops.tasks import Task
from slmops.teacher.labeller import Labeller
from slmops.teacher.validate import check_new_input
from slmops.text.dedup import NearDupIndex


def contrast_asks(task: Task, rows: list[dict], n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` asks ``(target class, source input, source id)``: sources drawn from ``rows`` without repeats (while
    they last), each target another class, uniformly. No asks for a task without classes or a contrast prompt."""
    field = task.spec.output.get(task.stratify_by) if task.stratify_by else None
    classes = list(field.values or []) if field is not None else []
    if n <= 0 or not rows or len(classes) < 2 or task.spec.contrast_prompt is None:
        return []
    rng = random.Random(f"contrast-{seed}")
    sources = rng.sample(rows, n) if n <= len(rows) else rng.choices(rows, k=n)
    asks = []
    for row in sources:
        current = task.class_of(row["expected"])
        asks.append((rng.choice([c for c in classes if c != current]), row["input"], row["id"]))
    return asks


def contrast(
    labeller: Labeller, asks: Sequence[tuple[str, str, str]], test_index: NearDupIndex, test_inputs: Sequence[str]
) -> tuple[list[dict], dict[str, int]]:
    """The teacher's rewrites for ``asks``, checked against the test inputs and labelled blind."""
    task, cfg = labeller.task, labeller.cfg
    answers = labeller.ask([task.build_contrast_messages(c, source) for c, source, _ in asks], cfg.augment_sampling)
    exact_only = NearDupIndex(1.0)  # a rewrite is meant to be near its source: only an unchanged copy is rejected
    written = []
    for (klass, source, source_id), response in zip(asks, answers, strict=True):
        text, reason = check_new_input(task, response, source, exact_only, test_index, labeller.pii_cfg)
        if text is None or text == source:
            labeller.reject(f"contrast-{source_id}-{klass}", source, reason or "copies_example", response)
            continue
        written.append((klass, text, source_id, response))
    novelty = novelty_rejects([w[1] for w in written], [], test_inputs, cfg.novelty_max_similarity)
    kept = []
    for (klass, text, source_id, response), reason in zip(written, novelty, strict=True):
        if reason is None:
            kept.append((klass, text, source_id))
        else:
            labeller.reject(f"contrast-{source_id}-{klass}", text, reason, response)
    labeller.progress.grow(len(kept))
    labels = labeller.label([t for _, t, _ in kept], wanted=[k for k, _, _ in kept])
    ids = [f"contrast-{sha256_text(t)[:12]}" for _, t, _ in kept]
    rows = [(i, t, *lab) for i, (_, t, _), lab in zip(ids, kept, labels, strict=True)]
    accepted = labeller.accepted_rows(rows, "teacher_contrast", cfg.augment_sampling)
    sources = {i: source_id for i, (_, _, source_id) in zip(ids, kept, strict=True)}
    for row in accepted:
        row["provenance"]["contrast_of"] = sources[row["id"]]
    mismatched = sum(reason == "label_mismatch" for _, reason, _ in labels)
    return accepted, {"contrast_not_novel": sum(r is not None for r in novelty), "contrast_agreement": mismatched}
