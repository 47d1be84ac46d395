"""Active distillation: rounds after finetune that spend teacher label calls where the student needs them.

Usage:
    slmops run --set active.rounds=2 --set active.budget=60      # or an `active:` section in the profile

Each round (``ActiveConfig``): the teacher writes fresh inputs (synthesize's self-instruct asks, with new
examples and a new sampling seed per round, through the same copy / near-duplicate / novelty filters); the
student answers them; ``synthesize.active.select`` picks the disagreeing, then the least certain, up to the
round's share of the budget; the teacher labels those blind; the accepted rows join the training set
(``<out_dir>/active/train.jsonl``) and the student trains on from its adapter (``finetune.run(init_adapter=)``).
Every teacher call goes through the response cache and is counted and costed as in synthesize, so a rerun
with the same params makes no new call. ``<out_dir>/active/labelled.jsonl`` holds the labelled rows.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from slmops.config import ActiveConfig, FinetuneConfig, PIIConfig, SynthesizeConfig, TeacherConfig
from slmops.io import load_jsonl, sha256_text, write_jsonl
from slmops.synthesize.active import select, student_views
from slmops.synthesize.augment import cell_of, plan_asks, write_inputs
from slmops.synthesize.stage import SyntheticExample
from slmops.tasks import Task
from slmops.teacher import open_teacher
from slmops.teacher.cache import ResponseCache
from slmops.teacher.labeller import Labeller, StageProgress
from slmops.text.dedup import NearDupIndex
from slmops.train import finetune


class ActiveResult(finetune.FinetuneResult):
    """The last round's training result, what the rounds did (``active``) and what this execution spent."""

    active: dict[str, Any]  # per round: written, disagreed, label calls (cached ones too), labelled, losses
    teacher_calls: int = 0  # new (uncached) teacher calls, writing and labelling: 0 on a rerun from the cache
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost: float = 0.0  # synthesize.cost's prices times this execution's tokens
    # Kept out of the output folder's manifest (flows/runner.py), as synthesize's: a rerun changes no output.
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "teacher_calls",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "estimated_cost",
    )


def run(
    cfg: ActiveConfig,
    synthesize: SynthesizeConfig,
    finetune_cfg: FinetuneConfig,
    *,
    task: Task,
    train: Path,
    val: Path | None,
    test_inputs: list[str],
    base_model: str,
    out_dir: Path,
    cache_path: Path,
    seed: int = 42,
    teacher: TeacherConfig | None = None,
    pii_cfg: PIIConfig | None = None,
) -> ActiveResult:
    """``cfg.rounds`` (>= 1) rounds on the student finetune just wrote to ``out_dir``; the last round's result.
    ``teacher`` is the distillation teacher finetune got (gkd / kd), passed on to each round's training."""
    rows, labelled, rounds, trained = load_jsonl(train), [], [], None
    test_index, train_index = NearDupIndex(synthesize.near_dup_threshold), NearDupIndex(synthesize.near_dup_threshold)
    for text in test_inputs:
        test_index.add(text)
    for row in rows:
        train_index.add(row["input"])
    progress, cache, left = StageProgress(0, desc="active"), ResponseCache(cache_path), cfg.budget
    try:
        with open_teacher(synthesize.teacher) as client:
            labeller = Labeller(synthesize, task, client, cache, progress, pii_cfg)
            for r in range(1, cfg.rounds + 1):
                share = left // (cfg.rounds - r + 1)  # the budget left, spread over the rounds left
                context = (test_index, train_index, ([x["input"] for x in rows + labelled], test_inputs))
                new, summary = one_round(cfg, labeller, rows, context, out_dir, r, share, seed)
                left -= summary["label_calls"]
                labelled += new
                write_jsonl(out_dir / "active" / "train.jsonl", rows + labelled)
                trained = retrain(cfg, finetune_cfg, task, out_dir, base_model, val, seed + r, teacher)
                rounds.append(summary | {"train_loss": trained.final_train_loss, "eval_loss": trained.eval_loss})
    finally:
        progress.close()
        cache.close()
    write_jsonl(out_dir / "active" / "labelled.jsonl", labelled)
    write_jsonl(out_dir / "active" / "rejects.jsonl", labeller.rejects)
    if trained is None:
        raise ValueError("active.run needs active.rounds >= 1")
    return ActiveResult(**trained.model_dump(), **_summary(cfg, synthesize, labeller, rounds, len(labelled)))


def one_round(
    cfg: ActiveConfig, labeller: Labeller, rows: list[dict], context, student: Path, r: int, share: int, seed: int
) -> tuple[list[dict], dict[str, Any]]:
    """Round ``r``: fresh inputs, the student's answers, ``share`` label calls at most; the accepted rows."""
    from slmops.inference.chat_model import ChatModel

    task, syn = labeller.task, labeller.cfg
    examples = [x for x in rows if x.get("source") == "gold"] or rows
    plan = syn.model_copy(update={"augment_per_category": cfg.per_category})
    asks, _ = plan_asks(task, examples, plan, random.Random(f"active-{seed}-{r}"), seed + r)
    sampling = syn.augment_sampling.model_copy(update={"seed": (syn.augment_sampling.seed or 0) + 7919 * r})
    written, _ = write_inputs(labeller, asks, *context, sampling=sampling)
    texts, wanted = [t for _, t in written], [a.klass for a, _ in written]
    views = student_views(ChatModel.load(student), task, texts, wanted, cfg.max_new_tokens)
    chosen = select(views, share, cfg.confident)
    labeller.progress.grow(len(chosen))
    labels = labeller.label([texts[i] for i in chosen])  # blind: the teacher's class stands
    ids = [f"active-{sha256_text(texts[i])[:12]}" for i in chosen]
    tuples = [(row_id, texts[i], *lab) for row_id, i, lab in zip(ids, chosen, labels, strict=True)]
    accepted = labeller.accepted_rows(tuples, "teacher_active", syn.sampling)
    by_id = dict(zip(ids, chosen, strict=True))
    for row in accepted:
        i = by_id[row["id"]]
        row["provenance"]["cell"] = cell_of(task, written[i][0])
        row["active"] = {"round": r, "student": views[i].answered, "certainty": round(views[i].certainty, 4)}
        SyntheticExample.model_validate(row)
    summary = {"round": r, "written": len(texts), "disagreed": sum(v.disagrees for v in views)}
    summary |= {"label_calls": len(chosen), "labelled": len(accepted), "budget": share}
    return accepted, summary


def retrain(
    cfg: ActiveConfig, finetune_cfg: FinetuneConfig, task: Task, out_dir: Path, base_model: str, val, seed, teacher
):
    """Train ``cfg.epochs`` over ``<out_dir>/active/train.jsonl`` from the student in ``out_dir`` (its adapter on
    the same base, or its full weights), writing the new student to ``out_dir``."""
    training = finetune_cfg.training.model_copy(update={"epochs": cfg.epochs, "max_steps": -1})
    ft = finetune_cfg.model_copy(update={"training": training, "resume": False})
    with tempfile.TemporaryDirectory(prefix="slmops-active-") as tmp:
        prev = Path(
            shutil.copytree(out_dir, Path(tmp) / "prev", ignore=shutil.ignore_patterns("active", "checkpoints"))
        )
        adapter = prev / "adapter" if (prev / "adapter").exists() else None
        return finetune.run(
            ft,
            task=task,
            train=out_dir / "active" / "train.jsonl",
            val=val,
            base_model=base_model if adapter else str(prev),
            out_dir=out_dir,
            seed=seed,
            teacher=teacher,
            init_adapter=adapter,
        )


def _summary(cfg: ActiveConfig, syn: SynthesizeConfig, labeller: Labeller, rounds: list[dict], n: int) -> dict:
    usage, price = labeller.usage, syn.cost
    cost = usage["prompt_tokens"] / 1000 * price.prompt_per_1k_tokens
    cost += usage["completion_tokens"] / 1000 * price.completion_per_1k_tokens
    done = {"rounds": rounds, "budget": cfg.budget, "label_calls": sum(r["label_calls"] for r in rounds)}
    done |= {"labelled": n, "rejected": dict(labeller.rejected)}
    spent = {"teacher_calls": usage["calls"], "cache_hits": labeller.cache_hits, "estimated_cost": round(cost, 6)}
    tokens = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}
    return {"active": done} | spent | tokens
