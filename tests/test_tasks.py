"""A task is data: every shipped spec loads; a bad spec fails at load naming the key; metrics per field type."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slmops.config.project import example_dir, examples
from slmops.tasks import load_task
from tests.projects import REVIEWS, TRIAGE

SPECS = sorted(
    (ex, p.stem) for ex in examples() for p in (example_dir(ex) / "tasks").glob("*.yaml") if ".gates" not in p.name
)


def test_two_different_tasks_ship():
    """Two examples whose specs differ in kind: one an enum task, one with an integer, labels and text."""
    triage, reviews = load_task("ticket_triage", TRIAGE), load_task("review_insights", REVIEWS)
    assert {f.type for f in triage.fields.values()} == {"enum", "text"}
    assert {f.type for f in reviews.fields.values()} == {"integer", "labels", "text"}
    assert set(triage.metric_names).isdisjoint(set(reviews.metric_names) - {"json_valid_rate", "exact_match"})


@pytest.mark.parametrize(("example", "name"), SPECS)
def test_every_shipped_spec_loads_and_its_schema_round_trips(example, name):
    task = load_task(name, example_dir(example))
    schema = task.response_format()["json_schema"]["schema"]
    assert set(schema["required"]) == set(task.fields)
    assert task.build_messages("x")[-1]["content"].endswith("x")
    assert task.metric_names[:2] == ["json_valid_rate", "exact_match"]


def _spec(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((REVIEWS / "tasks" / "review_insights.yaml").read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"output.rating.type": "percentage"}, "output.rating.type"),
        ({"output.aspects.values": None}, "output.aspects"),
        ({"output.summary.metrics": ["accuracy"]}, "do not apply to a text field"),
        ({"teacher_instructions": None}, "teacher_instructions: Field required"),
        ({"student_prompt": "no placeholder"}, "student_prompt must contain '{input}'"),
        ({"output.rating.typo": 1}, "output.rating.typo: Extra inputs are not permitted"),
    ],
)
def test_a_bad_spec_fails_at_load_naming_the_key(tmp_path, changes, expected):
    path = _spec(tmp_path, **changes)
    with pytest.raises(ValueError) as err:
        load_task(str(path), tmp_path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_metrics_per_field_type():
    task = load_task("review_insights", REVIEWS)
    good = '{"rating": 4, "aspects": ["price", "quality"], "summary": "価格・品質に満足。"}'
    off = '{"rating": 2, "aspects": ["price"], "summary": "価格に満足。"}'
    gold = {"rating": 4, "aspects": ["price", "quality"], "summary": "価格・品質に満足。"}
    m = task.compute_metrics([good, off, "not json"], [gold] * 3)
    assert m["json_valid_rate"] == pytest.approx(2 / 3) and m["exact_match"] == pytest.approx(1 / 3)
    assert m["rating_accuracy"] == pytest.approx(1 / 3)
    assert m["rating_mae"] == pytest.approx(1.0)  # over valid answers: |4-4| and |2-4|
    assert m["aspects_set_accuracy"] == pytest.approx(1 / 3)
    assert m["aspects_micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 3))  # tp 3, fn 3 (1 + 2 for the invalid)
    assert 0 < m["summary_chrf"] < 100


def test_macro_f1_punishes_ignoring_a_class():
    task = load_task("ticket_triage", TRIAGE)
    out = '{"category": "billing", "priority": "low", "reply": "x"}'
    m = task.compute_metrics([out] * 4, [{"category": c, "priority": "low"} for c in ["billing"] * 3 + ["other"]])
    assert m["category_accuracy"] == 0.75 and m["category_macro_f1"] < 0.5


def test_no_module_outside_tasks_names_a_task():
    root = Path(__file__).resolve().parent.parent
    named = [
        str(p.relative_to(root))
        for p in (root / "src" / "slmops").rglob("*.py")
        if "ticket_triage" in p.read_text(encoding="utf-8") and p.parent.name not in ("tasks", "demo")
    ]
    assert named == []
