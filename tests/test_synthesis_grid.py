"""The attribute grid: axes from the spec or the defaults, a seeded even spread of asks, cells in prompts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from slmops.synthesize.grid import DEFAULT_ATTRIBUTES, assign_cells, attribute_axes, cell_figures, grid_cells
from slmops.tasks import load_task
from slmops.tasks.spec import Task, TaskSpec
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)


def _spec(**kw) -> dict:
    base = {
        "name": "t",
        "output": {"kind": {"type": "enum", "values": ["a", "b"]}},
        "teacher_instructions": "label it",
        "augment_prompt": "Write one new input of kind {kind}. Example:\n{example}",
    }
    return base | kw


def test_defaults_apply_unless_the_spec_declares_axes():
    assert attribute_axes(None) == DEFAULT_ATTRIBUTES
    assert set(DEFAULT_ATTRIBUTES["noise"]) == {"none", "typos", "width", "english", "two_issues"}
    assert len(grid_cells(DEFAULT_ATTRIBUTES)) == 3 * 2 * 3 * 5
    assert attribute_axes({"tone": ["angry", "calm"]}) == {"tone": ["angry", "calm"]}
    assert attribute_axes({}) == {} and grid_cells({}) == [{}]


def test_asks_spread_evenly_over_each_class_and_attribute():
    classes = ["a"] * 6 + ["b"] * 6
    cells = assign_cells(classes, DEFAULT_ATTRIBUTES, random.Random(1))
    for klass in ("a", "b"):
        mine = [c for k, c in zip(classes, cells, strict=True) if k == klass]
        assert len({tuple(c.items()) for c in mine}) == 6  # no cell twice within a class
        assert Counter(c["register"] for c in mine) == {"plain": 2, "polite": 2, "keigo": 2}
        assert Counter(c["length"] for c in mine) == {"short": 3, "long": 3}
        assert Counter(c["channel"] for c in mine) == {"mail": 2, "chat": 2, "form": 2}
        assert set(Counter(c["noise"] for c in mine).values()) <= {1, 2}


def test_more_asks_than_cells_go_round_the_grid():
    cells = assign_cells(["a"] * 7, {"x": ["1", "2", "3"]}, random.Random(0))
    assert sorted(Counter(c["x"] for c in cells).values()) == [2, 2, 3]


def test_the_spread_is_deterministic_per_seed():
    classes = ["a"] * 10 + ["b"] * 10
    first = assign_cells(classes, DEFAULT_ATTRIBUTES, random.Random(5))
    assert first == assign_cells(classes, DEFAULT_ATTRIBUTES, random.Random(5))
    assert first != assign_cells(classes, DEFAULT_ATTRIBUTES, random.Random(6))


def test_cell_figures_count_rows_per_non_empty_cell():
    cells = [{"r": "x"}, {"r": "x"}, {"r": "y"}]
    assert cell_figures(cells, grid_size=4) == {
        "cells_filled": 2.0,
        "cells_total": 4.0,
        "rows_per_cell_min": 1.0,
        "rows_per_cell_max": 2.0,
    }
    assert cell_figures([], 4)["cells_filled"] == 0.0


def test_the_prompt_appends_the_attributes_when_the_template_has_no_placeholder():
    plain = task.build_augment_messages("billing", "例です。")[0]["content"]
    cell = {"register": "keigo", "channel": "mail"}
    assert task.build_augment_messages("billing", "例です。", cell)[0]["content"] == (
        plain + "\nAttributes: register=keigo, channel=mail"
    )
    assert task.build_augment_messages("billing", "例です。", {})[0]["content"] == plain


def test_the_prompt_fills_an_attributes_placeholder():
    spec = TaskSpec.model_validate(_spec(augment_prompt="Kind {kind}, style: {attributes}. Example: {example}"))
    content = Task(spec).build_augment_messages("a", "ex", {"tone": "calm"})[0]["content"]
    assert content == "Kind a, style: tone=calm. Example: ex"


def test_a_spec_declares_its_axes_and_bad_ones_fail_at_load():
    spec = TaskSpec.model_validate(_spec(synthesis_attributes={"tone": ["angry", "calm"]}))
    assert attribute_axes(spec.synthesis_attributes) == {"tone": ["angry", "calm"]}
    assert TaskSpec.model_validate(_spec()).synthesis_attributes is None  # the defaults
    for bad in ({"tone": []}, {"tone": ["a", "a"]}, {"not a name": ["a"]}, {"kind": ["a"]}):
        with pytest.raises(ValueError, match="synthesis_attributes"):
            TaskSpec.model_validate(_spec(synthesis_attributes=bad))
