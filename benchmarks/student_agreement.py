"""How far apart are students trained alike? Accuracy, pairwise agreement, majority vote and "any right".

Usage (from the repository, after training two or more students on the same base, e.g. with other seeds;
paths are read from the current folder, aliases such as poc from the project's registry):
    .venv/bin/python -m benchmarks.student_agreement --project demo \\
        --models demo/models/student /tmp/seed7/models/student poc \\
        --data demo/data/dev_handwritten.jsonl demo/data/dev_handwritten_2.jsonl

Each model answers every row of the files together (pooled), read as the served model reads them. Prints one
line per model (accuracy of ``--field``, by default the task's ``stratify_by`` field), the share of rows on which
each pair gives the same label, the accuracy of the majority vote (a tie keeps the first model's label) and the
share of rows that at least one model gets right. The last line is one JSON object with every figure.

Why: two students of the same training file and params, seeds 42 and 7, scored 0.772 and 0.726 on five
hand-written sets pooled (390 rows) and agreed on only 77% of those rows, while both scored 1.000 on the gold
test set (README, "Where the rest of the error is"). A lever judged on one run each is judged on that noise.
The same-labels question needs the hand-written sets, so mind which of them a figure has already read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path


def agreement(labels: dict[str, list], expected: list) -> dict:
    """Figures over models' labels for the same rows (``None``: no valid answer)."""
    names, n = list(labels), len(expected)
    votes = []
    for i in range(n):
        (top, count), *_ = Counter(labels[m][i] for m in names).most_common(1)
        votes.append(top if count > 1 else labels[names[0]][i])
    return {
        "n": n,
        "accuracy": {m: sum(p == e for p, e in zip(labels[m], expected, strict=True)) / n for m in names},
        "agreement": {
            f"{a} | {b}": sum(x == y for x, y in zip(labels[a], labels[b], strict=True)) / n
            for a, b in itertools.combinations(names, 2)
        },
        "majority_vote": sum(v == e for v, e in zip(votes, expected, strict=True)) / n,
        "any_right": sum(any(labels[m][i] == expected[i] for m in names) for i in range(n)) / n,
    }


def confusion(predicted: list, expected: list) -> dict:
    """Where one model's errors go: how often it predicts each label (``None``: no valid answer), and for each
    expected label, how many other labels its rows were given. A model with a default class shows one label
    predicted far more often than the rest; errors spread over many labels show no such class."""
    wrong: dict = {}
    for p, e in zip(predicted, expected, strict=True):
        if p != e:
            wrong.setdefault(e, set()).add(p)
    return {
        "predicted": dict(Counter(predicted).most_common()),
        "lost_to": {label: len(wrong.get(label, ())) for label in sorted(set(expected), key=str)},
    }


def labelled_rows(path: Path, params, task) -> list[dict]:
    """A labelled file's rows as the served model reads them; skipped rows reported (file, line), as `slmops
    evaluate` reports them."""
    from slmops.evaluate.stage import served_inputs

    rejects: list[dict] = []
    rows = served_inputs(path, params, task, rejects)
    for r in rejects:
        print(f"skipped {r['file']}:{r['line']}: {r['reason']}", file=sys.stderr)
    return rows


def answers(model, task, rows: list[dict], params, field: str) -> list:
    """The model's label of ``field`` on each row (None: no valid answer)."""
    from slmops.evaluate.stage import evaluate_model

    _, predictions = evaluate_model(model, task, rows, params.evaluate.max_new_tokens)
    return [(p["predicted"] or {}).get(field) for p in predictions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="model folders or registry aliases (2 or more)")
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="labelled files, pooled")
    parser.add_argument("--field", help="the enum field compared (default: the task's stratify_by)")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project (default: here)")
    parser.add_argument("--profile")
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("--models needs two or more models to compare")

    from slmops.cli.common import load_model, setup
    from slmops.tasks import load_task

    work_dir = args.project.resolve()
    params = setup(work_dir, args.profile)
    task = load_task(params.task, work_dir)
    field = args.field or task.spec.stratify_by
    if field is None:
        parser.error("the task has no stratify_by field: name one with --field")
    rows = [row for path in args.data for row in labelled_rows(path, params, task)]
    labels = {name: answers(load_model(name, params, work_dir), task, rows, params, field) for name in args.models}
    expected = [r["expected"][field] for r in rows]
    figures = agreement(labels, expected)
    figures["confusion"] = {name: confusion(labels[name], expected) for name in labels}
    for name, acc in figures["accuracy"].items():
        spread = figures["confusion"][name]
        counts, lost = spread["predicted"].values(), spread["lost_to"].values()
        print(
            f"{name}: {field} accuracy {acc:.3f} ({figures['n']} rows); each label predicted {min(counts)}-"
            f"{max(counts)} times; each label's rows given {min(lost)}-{max(lost)} other labels"
        )
    for pair, share in figures["agreement"].items():
        print(f"same label: {pair}: {share:.3f}")
    print(f"majority vote {figures['majority_vote']:.3f} · at least one right {figures['any_right']:.3f}")
    print(json.dumps(figures | {"field": field, "files": [str(p) for p in args.data]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
