"""The attribute grid that self-instruct asks are spread over: class x register x length x channel x noise.

Usage:
    axes = attribute_axes(task.spec.synthesis_attributes)      # the spec's axes, else DEFAULT_ATTRIBUTES
    cells = assign_cells([c for c, _, _ in asks], axes, random.Random(42))
    task.build_augment_messages(klass, example, cells[0])   # "...\nAttributes: register=keigo, length=short, ..."

Each ask gets one cell of the grid. The sampler is greedy and seeded: every ask takes a least-used
``(class, cell)``, and among those the one whose attribute values are least used so far (within its class,
then overall), ties broken by a seeded shuffle. So with 6 asks per class and 3 registers, each class gets
each register twice; the same seed always gives the same cells.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence

# Applied to any task whose spec declares no ``synthesis_attributes``. ``width``: full- and half-width
# characters mixed; ``english``: English words mixed in; ``two_issues``: a second, smaller issue in the message.
DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "register": ["plain", "polite", "keigo"],
    "length": ["short", "long"],
    "channel": ["mail", "chat", "form"],
    "noise": ["none", "typos", "width", "english", "two_issues"],
}


def attribute_axes(declared: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """The task's declared axes (``{}`` declares none), or the defaults when it declares nothing."""
    source = DEFAULT_ATTRIBUTES if declared is None else declared
    return {name: list(values) for name, values in source.items()}


def grid_cells(axes: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every cell of the grid, in declaration order (one empty cell when there are no axes)."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(axes[n] for n in names))]


def assign_cells(
    classes: Sequence[str | None], axes: Mapping[str, Sequence[str]], rng: random.Random
) -> list[dict[str, str]]:
    """One cell per ask (``classes[i]`` is ask i's class), spread as evenly as the counts allow."""
    cells = grid_cells(axes)
    rng.shuffle(cells)  # the seeded tie-break: equal scores keep this order
    keys = [tuple(sorted(cell.items())) for cell in cells]
    used: Counter[tuple] = Counter()  # (class, cell) -> asks
    per_class: Counter[tuple] = Counter()  # (class, axis, value) -> asks
    overall: Counter[tuple] = Counter()  # (axis, value) -> asks
    chosen = []
    for klass in classes:

        def score(i: int, klass: str | None = klass) -> tuple[int, int, int]:
            items = keys[i]
            return (
                used[(klass, items)],
                sum(per_class[(klass, *item)] for item in items),
                sum(overall[item] for item in items),
            )

        best = min(range(len(cells)), key=score)
        used[(klass, keys[best])] += 1
        for item in keys[best]:
            per_class[(klass, *item)] += 1
            overall[item] += 1
        chosen.append(dict(cells[best]))
    return chosen


def cell_figures(cells: Sequence[Mapping[str, str]], grid_size: int) -> dict[str, float]:
    """Rows per non-empty cell (min, max), the non-empty cells and the grid's size."""
    counts = Counter(tuple(sorted(cell.items())) for cell in cells)
    return {
        "cells_filled": float(len(counts)),
        "cells_total": float(grid_size),
        "rows_per_cell_min": float(min(counts.values(), default=0)),
        "rows_per_cell_max": float(max(counts.values(), default=0)),
    }
