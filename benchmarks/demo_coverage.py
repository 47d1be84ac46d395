"""How much of what the demo teacher knows reaches the student (issue 22's diagnosis), in a built demo project.

Usage:
    .venv/bin/python -m benchmarks.demo_coverage --project demo           # after `make demo`; ~1 min on 2 cores
    .venv/bin/python -m benchmarks.demo_coverage --project demo --model poc --per-category 40 --seed 777

Three figures, none of them read from a hand-written set:
- keyword coverage: how many of the teacher's lexicon keywords (``CATEGORY_KEYWORDS``; also weighted by their
  weights) occur at least once / at least 5 times in the student's training file, per source, and in the
  pretraining corpus (``data/raw``);
- mixed cues: the share of training inputs in which the lexicon finds keywords of two or more categories, the
  only inputs from which a student can learn how the teacher weighs conflicting words;
- the student's category accuracy on fresh teacher-written inputs (self-instruct asks synthesize never made,
  over random attribute cells, labelled by the teacher, none in the training file) against its accuracy on a
  sample of its own training rows of each source.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from pathlib import Path

from slmops.demo.lexicon import CATEGORY_KEYWORDS
from slmops.demo.teacher import category_scores, label, normalise, write_inquiry
from slmops.io import load_jsonl
from slmops.synthesize.grid import DEFAULT_ATTRIBUTES


def keyword_coverage(texts: list[str]) -> dict[str, float]:
    """Share of keywords (and of keyword weight) found in at least 1 and at least 5 of ``texts``."""
    folded = [normalise(t) for t in texts]
    words = {k: w for ws in CATEGORY_KEYWORDS.values() for k, w in ws.items()}
    counts = {k: sum(k in t for t in folded) for k in words}
    total = sum(words.values())
    return {
        "n_texts": len(texts),
        "words_ge1": sum(c >= 1 for c in counts.values()) / len(words),
        "words_ge5": sum(c >= 5 for c in counts.values()) / len(words),
        "weight_ge1": sum(words[k] for k, c in counts.items() if c >= 1) / total,
        "weight_ge5": sum(words[k] for k, c in counts.items() if c >= 5) / total,
    }


def mixed_cue_share(texts: list[str]) -> float:
    return sum(sum(s > 0 for s in category_scores(t).values()) >= 2 for t in texts) / max(1, len(texts))


def fresh_rows(per_category: int, seed: int, seen: set[str]) -> list[dict]:
    """Teacher-written inputs for asks synthesize never made, labelled by the teacher, kept where the teacher
    labels them the class asked for (synthesize's agreement filter) and none is in ``seen``."""
    rng, rows = random.Random(seed), []
    for category in CATEGORY_KEYWORDS:
        kept = 0
        while kept < per_category:
            cell = ", ".join(f"{a}={rng.choice(v)}" for a, v in DEFAULT_ATTRIBUTES.items())
            text = write_inquiry(category, f"fresh ask {seed}-{rng.getrandbits(40)}", cell)
            answer = label(text)
            if text in seen or answer["category"] != category:
                continue
            seen.add(text)
            kept += 1
            rows.append({"input": text, "expected": answer})
    return rows


def sample(rows: list[dict], per_category: int, seed: int) -> list[dict]:
    shuffled = random.Random(seed).sample(rows, len(rows))
    taken: Counter[str] = Counter()
    out = []
    for r in shuffled:
        if taken[r["expected"]["category"]] < per_category:
            taken[r["expected"]["category"]] += 1
            out.append({"input": r["input"], "expected": r["expected"]})
    return out


def student_accuracy(project: Path, model: str, sets: dict[str, list[dict]]) -> dict[str, float]:
    """Category accuracy on each set, every input read as the server reads it (NFKC, PII masked)."""
    from slmops.cli.common import load_model, setup
    from slmops.evaluate.stage import evaluate_model, served_inputs
    from slmops.io import write_jsonl
    from slmops.tasks import load_task

    params = setup(project, None)
    task = load_task(params.task, project)
    chat = load_model(model, params, project)
    accuracy = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in sets.items():
            write_jsonl(Path(tmp) / f"{name}.jsonl", rows)
            served = served_inputs(Path(tmp) / f"{name}.jsonl", params, task, [])
            metrics = evaluate_model(chat, task, served, params.evaluate.max_new_tokens, desc=name)[0]
            accuracy[name] = metrics["category_accuracy"]
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--model", default="poc", help="a registry alias or a model folder")
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args()
    project = args.project.resolve()
    train = load_jsonl(project / "data/synthetic/train.jsonl")
    by_source: dict[str, list[dict]] = {}
    for r in train:
        by_source.setdefault(r.get("source", "unknown"), []).append(r)
    corpus = [r["input"] for r in load_jsonl(project / "data/raw/corpus.jsonl")]
    coverage = {"train": keyword_coverage([r["input"] for r in train]), "pretrain_corpus": keyword_coverage(corpus)}
    coverage |= {f"train_{s}": keyword_coverage([r["input"] for r in rows]) for s, rows in by_source.items()}
    mixed = {s: mixed_cue_share([r["input"] for r in rows]) for s, rows in by_source.items()}
    sets = {"fresh_teacher_written": fresh_rows(args.per_category, args.seed, {r["input"] for r in train})}
    sets |= {f"train_{s}": sample(rows, args.per_category, args.seed) for s, rows in by_source.items()}
    accuracy = student_accuracy(project, args.model, sets)
    for name, c in coverage.items():
        print(
            f"keywords in {name:26s} ({c['n_texts']:5d} texts): "
            + " ".join(f"{k} {v:.2f}" for k, v in c.items() if k != "n_texts")
        )
    for name, share in mixed.items():
        print(f"mixed-cue share of {name:21s} {share:.2f}")
    for name, acc in accuracy.items():
        print(f"student category accuracy on {name:24s} ({len(sets[name])} rows): {acc:.3f}")
    print(json.dumps({"coverage": coverage, "mixed_cue_share": mixed, "student_accuracy": accuracy}))


if __name__ == "__main__":
    main()
