"""Synthesize stage: the teacher labels the unlabelled pool and writes new inquiries from seed examples.

Usage:
    python -m components.synthesize --profile demo --train data/prepared/train.jsonl \
        --pool data/prepared/pool.jsonl --test data/prepared/test.jsonl --out-dir data/synthetic

Before any prompt leaves the machine, PII is masked and every row that is a near-duplicate of a test
input (MinHash, ``near_dup_threshold``) is dropped, gold rows included. Every teacher answer is then
validated (``components/teacher/validate.py`` lists the reject reasons); rejected ones are counted by
reason and written to ``rejects.jsonl``, never to ``train.jsonl``. If the reject rate passes
``max_reject_rate`` the stage fails with the breakdown. Answers are cached as they land (SQLite), so a
rerun after a crash or a kill makes no call for an answered prompt. Accepted rows carry provenance; the
manifest records content hashes, class balance (capped at ``max_class_share``), token usage and cost.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, model_validator
from tqdm.auto import tqdm

from components import pii
from components.config import SynthesizeConfig
from components.dedup import NearDupIndex, signature
from components.io import load_jsonl, sha256_text, write_jsonl, write_manifest
from components.tasks import ticket_triage as task
from components.teacher import TeacherResponse, open_teacher
from components.teacher.cache import ResponseCache, complete_cached
from components.teacher.validate import check_label, check_new_input


class Provenance(BaseModel):
    teacher_id: str
    model_version: str
    template_hash: str  # sha256 (16 hex) of the prompt templates the teacher saw
    sampling: dict[str, Any]
    created_at: str


class SyntheticExample(BaseModel):
    """One row of ``data/synthetic/train.jsonl``: a gold row, or a teacher row with its provenance."""

    id: str
    input: str
    expected: task.Label
    source: Literal["gold", "teacher_label", "teacher_augment"]
    provenance: Provenance | None = None

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


class StageProgress:
    """One bar for the whole stage: rate and ETA from tqdm, plus rejects and cache hits as they happen."""

    def __init__(self, total: int):
        self.bar = tqdm(total=total, desc="synthesize", unit="req", dynamic_ncols=True)
        self.rejects = 0
        self.cache_hits = 0

    def grow(self, n: int) -> None:
        self.bar.total += n
        self.bar.refresh()

    def step(self, response: TeacherResponse, rejected: bool) -> None:
        self.cache_hits += response.cached
        self.rejects += rejected
        self.bar.set_postfix(rejects=self.rejects, cache_hits=self.cache_hits, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def cap_classes(rows: list[dict], max_share: float, rng: random.Random) -> tuple[list[dict], Counter[str]]:
    """Drop teacher rows (never gold) of over-represented categories until none exceeds ``max_share``."""
    dropped: Counter[str] = Counter()
    while True:
        counts = Counter(r["expected"]["category"] for r in rows)
        over = {c: n - int(max_share * len(rows)) for c, n in counts.items() if n > max_share * len(rows)}
        droppable = [i for i, r in enumerate(rows) if r["expected"]["category"] in over and r["source"] != "gold"]
        if not over or not droppable:
            return rows, dropped
        rng.shuffle(droppable)
        cut = set()
        for i in droppable:
            category = rows[i]["expected"]["category"]
            if over[category] > 0:
                over[category] -= 1
                cut.add(i)
        dropped.update(rows[i]["expected"]["category"] for i in cut)
        rows = [r for i, r in enumerate(rows) if i not in cut]


def run(
    cfg: SynthesizeConfig, *, train: Path, pool: Path, test: Path, out_dir: Path, cache_path: Path, seed: int = 42
) -> SynthesizeResult:
    rng = random.Random(seed)
    test_index = NearDupIndex(cfg.near_dup_threshold)
    for row in load_jsonl(test):
        test_index.add(row["input"])
    # Decontaminate first: no test input, nor a near-duplicate of one, is trained on or even sent to the teacher.
    # PII is masked again here (prepare already did) so nothing unmasked can leave the machine in a prompt.
    decontaminated: Counter[str] = Counter()
    kept: dict[str, list[dict]] = {"gold": [], "pool": []}
    train_index = NearDupIndex(cfg.near_dup_threshold)  # everything trainable: new inputs must differ from it
    for name, path in (("gold", train), ("pool", pool)):
        for row in load_jsonl(path):
            row = {**row, "input": pii.mask(row["input"])}
            sig = signature(row["input"])
            if test_index.find(row["input"], sig) is not None:
                decontaminated[name] += 1
            else:
                kept[name].append(row)
                train_index.add(row["input"], sig)
    gold, unlabelled = kept["gold"], kept["pool"][: cfg.max_unlabelled]

    template_hash = sha256_text(task.prompt_template_text())[:16]
    rejected: Counter[str] = Counter()
    rejects: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    usage: Counter[str] = Counter()
    hits_total = 0
    by_cat: dict[str, list[str]] = {}
    for r in gold:
        by_cat.setdefault(r["expected"]["category"], []).append(r["input"])
    asks = [  # distinct examples where there are enough, so no two asks are the same (cached) prompt
        (c, example, i)
        for c in sorted(by_cat)
        for i, example in enumerate(
            rng.sample(by_cat[c], cfg.augment_per_category)
            if cfg.augment_per_category <= len(by_cat[c])
            else rng.choices(by_cat[c], k=cfg.augment_per_category)
        )
    ]
    progress = StageProgress(len(unlabelled) + len(asks))
    cache = ResponseCache(cache_path)

    def ask(requests: list[list[dict]], sampling, response_format=None, check=None) -> list[TeacherResponse]:
        nonlocal hits_total

        def on_answer(i: int, response: TeacherResponse) -> None:
            progress.step(response, rejected=check is not None and check(i, response) is not None)

        responses, hits = complete_cached(teacher, cache, template_hash, requests, sampling, response_format, on_answer)
        hits_total += hits
        for r in responses:
            if not r.cached and r.error is None:
                usage["prompt_tokens"] += r.prompt_tokens
                usage["completion_tokens"] += r.completion_tokens
                usage["calls"] += 1
        return responses

    def label(inputs: list[str], wanted: list[str] | None = None) -> list[tuple[task.Label | None, str | None, Any]]:
        """Label ``inputs``; with ``wanted`` categories (self-instruct), another category is a label_mismatch."""

        def check(i: int, response: TeacherResponse) -> tuple[task.Label | None, str | None]:
            lab, reason = check_label(response, inputs[i])
            if lab is not None and wanted is not None and lab.category != wanted[i]:
                return None, "label_mismatch"
            return lab, reason

        responses = ask(
            [task.build_teacher_messages(t) for t in inputs],
            cfg.sampling,
            task.response_format(),
            check=lambda i, r: check(i, r)[1],
        )
        return [(*check(i, r), r) for i, r in enumerate(responses)]

    def provenance(sampling) -> dict[str, Any]:
        return {
            "teacher_id": teacher.teacher_id,
            "model_version": teacher.model_version,
            "template_hash": template_hash,
            "sampling": sampling.model_dump(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def reject(row_id: str, text: str, reason: str, response: TeacherResponse) -> None:
        rejected[reason.split(":")[0]] += 1
        raw = pii.mask(response.text) if response.text else None
        rejects.append({"id": row_id, "input": text, "reason": reason, "raw": raw})

    try:
        with open_teacher(cfg.teacher) as teacher:
            # 1. Label the pool.
            for row, (lab, reason, response) in zip(unlabelled, label([r["input"] for r in unlabelled]), strict=True):
                if lab is None:
                    reject(row["id"], row["input"], reason or "unknown", response)
                    continue
                accepted.append(
                    {
                        "id": row["id"],
                        "input": row["input"],
                        "expected": lab.model_dump(),
                        "source": "teacher_label",
                        "provenance": provenance(cfg.sampling),
                    }
                )

            # 2. Self-instruct: new inquiries per category from seed examples, then labelled like the pool.
            answers = ask([task.build_augment_messages(c, ex) for c, ex, _ in asks], cfg.augment_sampling)
            new_inputs: list[tuple[str, str]] = []
            for (category, example, i), response in zip(asks, answers, strict=True):
                text, reason = check_new_input(response, example, train_index, test_index)
                if text is None:
                    reject(f"augment-{category}-{i}", example, reason or "unknown", response)
                    continue
                train_index.add(text)
                new_inputs.append((category, text))
            progress.grow(len(new_inputs))
            labels = label([t for _, t in new_inputs], wanted=[c for c, _ in new_inputs])
            for (category, text), (lab, reason, response) in zip(new_inputs, labels, strict=True):
                if lab is None:
                    reject(f"augment-{category}", text, reason or "unknown", response)
                    continue
                accepted.append(
                    {
                        "id": f"aug-{sha256_text(text)[:12]}",
                        "input": text,
                        "expected": lab.model_dump(),
                        "source": "teacher_augment",
                        "provenance": provenance(cfg.augment_sampling),
                    }
                )
    finally:
        progress.close()
        cache.close()

    asked = len(unlabelled) + len(asks)
    reject_rate = sum(rejected.values()) / asked if asked else 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    if reject_rate > cfg.max_reject_rate:
        raise RejectRateExceeded(
            f"teacher reject rate {reject_rate:.1%} > max_reject_rate {cfg.max_reject_rate:.0%}; "
            f"by reason: {dict(rejected)}; see {out_dir / 'rejects.jsonl'}"
        )
    rows, dropped = cap_classes([{**r, "source": "gold"} for r in gold] + accepted, cfg.max_class_share, rng)
    leaks = [r["id"] for r in rows if pii.find_pii(r["input"]) or pii.find_pii(r["expected"].get("reply", ""))]
    if leaks:  # cannot happen while masking is applied above; checked because the cost of a leak is high
        raise PIILeak(f"unmasked PII in {len(leaks)} synthetic rows, e.g. {leaks[:5]}; nothing was written")
    for row in rows:  # the file's contract, checked on every row before it is written
        SyntheticExample.model_validate(row)
    write_jsonl(out_dir / "train.jsonl", rows)
    classes = Counter(r["expected"]["category"] for r in rows)
    balance = {c: round(n / len(rows), 4) for c, n in sorted(classes.items())}
    warnings = [f"{c}: {share:.1%} < min_class_share" for c, share in balance.items() if share < cfg.min_class_share]
    counts = Counter(r["source"] for r in rows)
    price = cfg.cost
    result = SynthesizeResult(
        out_file=out_dir / "train.jsonl",
        counts={**counts, "asked": asked, "total": len(rows)},
        rejected=dict(rejected),
        reject_rate=reject_rate,
        decontaminated=dict(decontaminated),
        dropped_for_balance=dict(dropped),
        class_balance=balance,
        class_warnings=warnings,
        cache_hits=hits_total,
        teacher_calls=usage["calls"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        estimated_cost=round(
            usage["prompt_tokens"] / 1000 * price.prompt_per_1k_tokens
            + usage["completion_tokens"] / 1000 * price.completion_per_1k_tokens,
            6,
        ),
    )
    write_manifest(out_dir, stage="synthesize", currency=price.currency, **result.model_dump(mode="json"))
    return result


def main() -> None:
    import argparse

    from components.config import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path(".slmops/teacher_cache.sqlite"))
    args = parser.parse_args()
    params = load_params(args.profile)
    result = run(
        params.synthesize,
        train=args.train,
        pool=args.pool,
        test=args.test,
        out_dir=args.out_dir,
        cache_path=args.cache,
        seed=params.project.seed,
    )
    print(result.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
