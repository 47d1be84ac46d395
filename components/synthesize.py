"""Synthesize stage: the teacher labels the unlabelled pool and writes new inquiries from seed examples.

Usage:
    python -m components.synthesize --profile demo --train data/prepared/train.jsonl \
        --pool data/prepared/pool.jsonl --test data/prepared/test.jsonl --out-dir data/synthetic

Every teacher answer is parsed against the task schema. Invalid ones (empty, not JSON, schema violation,
truncated, refusal, echo of the prompt, test contamination, label mismatch) are counted by reason and
written to ``rejects.jsonl``, never to ``train.jsonl``. If the reject rate passes
``synthesize.max_reject_rate`` the stage fails with the breakdown. Accepted records carry provenance.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components import pii
from components.config import SynthesizeConfig
from components.data import near_dup_key
from components.io import load_jsonl, sha256_text, write_jsonl, write_manifest
from components.tasks import ticket_triage as task
from components.teacher import TeacherResponse, open_teacher
from components.teacher.cache import ResponseCache, complete_cached

REFUSAL = re.compile(r"I('m| am) sorry|I can(no|')t (help|assist)|as an AI|お答えできません|対応いたしかねます", re.I)


class RejectRateExceeded(RuntimeError):
    pass


class SynthesizeResult(BaseModel):
    out_file: Path
    counts: dict[str, int]
    rejected: dict[str, int]
    reject_rate: float
    cache_hits: int
    teacher_calls: int
    prompt_tokens: int
    completion_tokens: int


def check_label(response: TeacherResponse, prompt_text: str) -> tuple[task.Label | None, str | None]:
    """Validate one labelling answer. Returns ``(label, None)`` or ``(None, reject_reason)``."""
    if response.error:
        return None, f"teacher_error:{response.error}"
    text = response.text or ""
    if response.finish_reason == "length":
        return None, "truncated"
    if task.SYSTEM_PROMPT[:60] in text:
        return None, "echoes_system_prompt"
    if REFUSAL.search(text):
        return None, "refusal"
    label, reason = task.parse_output(text)
    if label is None:
        return None, reason
    if len(prompt_text) > 20 and prompt_text in label.reply:
        return None, "echoes_input"  # a planted instruction in the input came back as the answer
    return label, None


def check_new_input(response: TeacherResponse, example: str, blocked: set[str]) -> tuple[str | None, str | None]:
    """Validate one self-instruct answer (a new inquiry)."""
    if response.error:
        return None, f"teacher_error:{response.error}"
    if response.finish_reason == "length":
        return None, "truncated"
    text = pii.mask((response.text or "").strip())
    if len(text) < 5:
        return None, "empty"
    if REFUSAL.search(text):
        return None, "refusal"
    if near_dup_key(text) == near_dup_key(example):
        return None, "copies_example"
    if near_dup_key(text) in blocked:
        return None, "duplicate_or_test_contamination"
    return text, None


def run(
    cfg: SynthesizeConfig, *, train: Path, pool: Path, test: Path, out_dir: Path, cache_path: Path, seed: int = 42
) -> SynthesizeResult:
    gold = load_jsonl(train)
    unlabelled = load_jsonl(pool)[: cfg.max_unlabelled]
    test_keys = {near_dup_key(r["input"]) for r in load_jsonl(test)}
    blocked = test_keys | {near_dup_key(r["input"]) for r in gold + load_jsonl(pool)}
    template_hash = sha256_text(task.prompt_template_text())[:16]
    rng = random.Random(seed)
    rejected: Counter[str] = Counter()
    rejects: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    usage = Counter()
    cache = ResponseCache(cache_path)
    hits_total = 0

    with open_teacher(cfg.teacher) as teacher:

        def provenance(sampling) -> dict[str, Any]:
            return {
                "teacher_id": teacher.teacher_id,
                "model_version": teacher.model_version,
                "template_hash": template_hash,
                "sampling": sampling.model_dump(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }

        def label(inputs: list[str]) -> list[tuple[task.Label | None, str | None, TeacherResponse]]:
            nonlocal hits_total
            messages = [task.build_teacher_messages(t) for t in inputs]
            responses, hits = complete_cached(
                teacher, cache, template_hash, messages, cfg.sampling, response_format=task.response_format()
            )
            hits_total += hits
            for r in responses:
                if not r.cached:
                    usage["prompt_tokens"] += r.prompt_tokens
                    usage["completion_tokens"] += r.completion_tokens
                    usage["calls"] += 1
            return [(*check_label(r, t), r) for r, t in zip(responses, inputs, strict=True)]

        def reject(row_id: str, text: str, reason: str, response: TeacherResponse) -> None:
            rejected[reason.split(":")[0]] += 1
            rejects.append({"id": row_id, "input": text, "reason": reason, "raw": response.text})

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
        by_cat: dict[str, list[str]] = {}
        for r in gold:
            by_cat.setdefault(r["expected"]["category"], []).append(r["input"])
        asks = [(c, rng.choice(by_cat[c]), i) for c in sorted(by_cat) for i in range(cfg.augment_per_category)]
        responses, hits = complete_cached(
            teacher,
            cache,
            template_hash,
            [task.build_augment_messages(c, ex) for c, ex, _ in asks],
            cfg.augment_sampling,
        )
        hits_total += hits
        new_inputs: list[tuple[str, str]] = []
        for (category, example, i), response in zip(asks, responses, strict=True):
            text, reason = check_new_input(response, example, blocked)
            if text is None:
                reject(f"augment-{category}-{i}", example, reason or "unknown", response)
                continue
            blocked.add(near_dup_key(text))
            new_inputs.append((category, text))
        for (category, text), (lab, reason, response) in zip(
            new_inputs, label([t for _, t in new_inputs]), strict=True
        ):
            if lab is None or lab.category != category:
                reject(f"augment-{category}", text, reason or "label_mismatch", response)
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
    cache.close()

    asked = len(unlabelled) + len(asks)
    reject_rate = sum(rejected.values()) / asked if asked else 0.0
    rows = [{**r, "source": "gold"} for r in gold] + accepted
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    counts = {"gold": len(gold), **Counter(r["source"] for r in accepted), "asked": asked}
    if reject_rate > cfg.max_reject_rate:
        raise RejectRateExceeded(
            f"teacher reject rate {reject_rate:.1%} > max_reject_rate {cfg.max_reject_rate:.0%}; "
            f"by reason: {dict(rejected)}; see {out_dir / 'rejects.jsonl'}"
        )
    write_jsonl(out_dir / "train.jsonl", rows)
    classes = Counter(r["expected"]["category"] for r in rows)
    result = SynthesizeResult(
        out_file=out_dir / "train.jsonl",
        counts=counts,
        rejected=dict(rejected),
        reject_rate=reject_rate,
        cache_hits=hits_total,
        teacher_calls=usage["calls"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )
    write_manifest(out_dir, stage="synthesize", class_balance=dict(classes), **result.model_dump(mode="json"))
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
