"""The review_insights example's stand-in teacher (``slmops.demo.reviews:teacher``): labels, and new reviews
written for self-instruct in the tone and length the spec's attribute grid asks for."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from slmops.config import CallableTeacherConfig, SynthesizeConfig
from slmops.demo.reviews import generate, teacher
from slmops.io import load_jsonl, write_jsonl
from slmops.synthesize.stage import run
from slmops.tasks import load_task
from tests.projects import REVIEWS

task = load_task("review_insights", REVIEWS)
EXAMPLE = "加湿器を購入しました。翌日に届きました。色がくすんでいます。"


def _write(attributes: dict[str, str], example: str = EXAMPLE) -> str:
    return teacher(task.build_augment_messages(None, example, attributes))


def _label(text: str) -> dict:
    return json.loads(teacher(task.build_teacher_messages(text)))


@pytest.mark.parametrize(("length", "n_aspects"), [("short", 1), ("medium", 2), ("long", 3)])
@pytest.mark.parametrize(("tone", "ratings"), [("positive", {5}), ("negative", {1}), ("mixed", {2, 3, 4})])
def test_a_new_review_has_the_tone_and_length_asked_for(tone, ratings, length, n_aspects):
    texts = {_write({"tone": tone, "length": length}, example=f"{EXAMPLE}{i}") for i in range(8)}
    assert len(texts) >= 4 and EXAMPLE not in texts  # new text, not the example
    for text in texts:
        label = _label(text)
        assert len(label["aspects"]) == n_aspects, (text, label)
        assert label["rating"] in (ratings if n_aspects > 1 else {1, 5}), (text, label)


def test_writing_is_deterministic_and_labelling_requests_are_still_labelled():
    cell = {"tone": "mixed", "length": "long"}
    assert _write(cell) == _write(cell)
    assert _label(EXAMPLE) == {
        "rating": 3,
        "aspects": ["delivery", "design"],
        "summary": "配送に満足、デザインに不満。",
    }
    # A bare review (no system message), as the serve fallback sends it, is labelled, not rewritten.
    assert json.loads(teacher(task.build_messages(EXAMPLE)))["aspects"] == ["delivery", "design"]


def test_synthesize_asks_the_reviews_teacher_for_new_reviews_over_the_grid(tmp_path):
    sets = generate(seed=3, n_seed=30, n_pool=20, n_test=10)
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("seed", "pool", "test")}
    for name, path in paths.items():
        fields = task.fields if name != "pool" else {}  # the pool is unlabelled
        write_jsonl(
            path, [{"id": r["id"], "input": r["review"], "expected": {k: r[k] for k in fields}} for r in sets[name]]
        )
    cfg = SynthesizeConfig(
        teacher=CallableTeacherConfig(target="slmops.demo.reviews:teacher", model="review-lexicon-v1"),
        augment_per_category=90,
    )
    result = run(
        cfg,
        task=task,
        train=paths["seed"],
        pool=paths["pool"],
        test=paths["test"],
        out_dir=tmp_path / "out",
        cache_path=tmp_path / "cache.sqlite",
    )
    new = [r for r in load_jsonl(result.out_file) if r["source"] == "teacher_augment"]
    assert len(new) >= 45, result.rejected  # most asks give a new, novel review
    cells = Counter((r["provenance"]["cell"]["tone"], r["provenance"]["cell"]["length"]) for r in new)
    assert len(cells) == 9, cells  # every tone x length cell of the spec's grid
    for row in new:
        assert _label(row["input"]) == row["expected"]
        assert (
            len(row["expected"]["aspects"]) == {"short": 1, "medium": 2, "long": 3}[row["provenance"]["cell"]["length"]]
        )
