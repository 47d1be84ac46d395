"""Every shipped params file parses; every malformed one fails naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmops.config import ParamsError, gates_file, load_gates, load_params
from slmops.config.project import example_dir, examples
from tests.projects import REVIEWS, TRIAGE, TRIAGE_GATES

INVALID = Path(__file__).parent / "fixtures" / "invalid_params"


PROFILES = [(ex, p.stem) for ex in examples() for p in sorted((example_dir(ex) / "profiles").glob("*.yaml"))]


@pytest.mark.parametrize(("example", "profile"), PROFILES)
def test_every_shipped_profile_loads_with_its_gates(example, profile):
    root = example_dir(example)
    params = load_params(profile, project=root)
    assert params.synthesize.teacher.kind in {"openai", "transformers", "callable"}
    gates = load_gates(gates_file(params, root))
    assert set(gates.poc.min) <= set(gates.prod.min)


@pytest.mark.parametrize("example", examples())
def test_every_example_project_holds_only_a_project_file_profiles_tasks_and_data(example):
    """slmops.yaml may only change the code's defaults, never repeat them; every task has its gates beside it."""
    import yaml

    from slmops.config import Params
    from slmops.io import flatten

    root = example_dir(example)
    assert {p.name for p in root.iterdir()} <= {"slmops.yaml", "profiles", "tasks", "data"}
    defaults = flatten(Params().model_dump(mode="json"))
    base = flatten(yaml.safe_load((root / "slmops.yaml").read_text()) or {})
    assert [k for k, v in base.items() if defaults.get(k) == v] == []
    specs = [p for p in (root / "tasks").glob("*.yaml") if not p.name.endswith(".gates.yaml")]
    assert specs and all(s.with_name(s.stem + ".gates.yaml").exists() for s in specs)


def test_commands_find_the_project_by_walking_up_and_refuse_outside_one(tmp_path):
    from slmops.config.project import ProjectNotFound, find_project
    from tests.conftest import new_project, slmops

    root = new_project(tmp_path, "review_insights")
    (root / "data" / "deep" / "er").mkdir(parents=True)
    assert find_project(root / "data" / "deep" / "er") == root
    shown = slmops("params", cwd=root / "data" / "deep" / "er")
    assert "task: review_insights" in shown.stdout
    outside = slmops("params", cwd=tmp_path, check=False)
    assert outside.returncode == 2 and "slmops init" in outside.stderr
    with pytest.raises(ProjectNotFound):
        find_project(tmp_path)


def test_smoke_extends_demo():
    demo, smoke = load_params("demo", project=TRIAGE), load_params("smoke", project=TRIAGE)
    assert smoke.dvc.commit is False and demo.dvc.commit is True
    assert smoke.synthesize.teacher == demo.synthesize.teacher  # from slmops.yaml, through demo
    assert smoke.finetune.lora == demo.finetune.lora


def test_a_profile_can_extend_another_and_overrides_apply_last():
    params = load_params("smoke", project=REVIEWS, overrides=["finetune.training.epochs=2"])
    demo = load_params("demo", project=REVIEWS)
    assert params.task == "review_insights" and params.demo.n_pool == 60 and demo.demo.n_pool == 300
    assert params.quantize.candidates == demo.quantize.candidates == ["int8", "int4"]  # from slmops.yaml
    assert params.finetune.training.epochs == 2 and params.finetune.training.max_length == 160
    assert params.model_name == "review-insights-slm"


def test_a_partial_section_keeps_the_other_defaults_of_that_section():
    params = load_params("smoke", project=TRIAGE)  # sets augment_sampling: {max_tokens: 48} only
    assert params.synthesize.augment_sampling.seed == 42 and params.synthesize.augment_sampling.temperature == 0.9


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("unknown_key.yaml", "finetune.methd: Extra inputs are not permitted"),
        ("bad_type.yaml", "prepare.val_fraction"),
        ("unknown_teacher_kind.yaml", "synthesize.teacher"),
        ("teacher_typo.yaml", "synthesize.teacher.base_ulr"),
        ("string_number.yaml", "finetune.training.epochs: Input should be a valid number"),
    ],
)
def test_invalid_params_fail_with_file_and_key(fixture, expected):
    with pytest.raises(ParamsError) as err:
        load_params("smoke", project=TRIAGE, extra=INVALID / fixture)
    assert expected in str(err.value)
    assert fixture in str(err.value)


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ParamsError, match="unknown profile 'nope'"):
        load_params("nope", project=TRIAGE)


@pytest.mark.parametrize(
    ("stage", "kind", "metric", "value", "expected"),
    [
        ("pilot", "min", "category_accuracy", 0.5, "pilot.min.category_accuracy 0.5 is looser than poc's 0.6"),
        ("prod", "max", "size_mb", 100, "prod.max.size_mb 100.0 is looser than pilot's 50.0"),
        ("prod", "max", "latency_p95_ms", None, "prod.max.latency_p95_ms None is looser than pilot's 1000.0"),
    ],
)
def test_gates_must_get_stricter_at_each_stage(tmp_path, stage, kind, metric, value, expected):
    import yaml

    gates = load_gates(TRIAGE_GATES).model_dump()
    gates["poc"]["min"]["category_accuracy"] = 0.6
    if value is None:
        del gates[stage][kind][metric]
    else:
        gates[stage][kind][metric] = value
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(gates))
    with pytest.raises(ParamsError) as err:
        load_gates(path)
    assert f"gates.yaml: {expected}" in str(err.value)


def test_a_gate_on_a_metric_the_task_does_not_report_stops_the_run_before_it_starts(tmp_path):
    from slmops.config.preflight import check

    gates = "tasks/ticket_triage.gates.yaml"
    params = load_params("smoke", project=REVIEWS, overrides=[f"gates={gates}"])  # ticket_triage's gates
    (tmp_path / "tasks").mkdir()
    for name in ("review_insights.yaml", "ticket_triage.gates.yaml"):
        (tmp_path / "tasks" / name).write_bytes(
            ((REVIEWS if "review" in name else TRIAGE) / "tasks" / name).read_bytes()
        )
    problems = check(params, tmp_path)
    assert any("category_accuracy: the task reports no such metric" in p for p in problems)


def test_an_offline_run_with_a_hub_id_fails_fast_naming_the_model_and_the_switch(tmp_path):
    from tests.conftest import new_project, slmops

    tmp_path = new_project(tmp_path, "ticket_triage")

    proc = slmops(
        "run",
        "--profile",
        "smoke",
        "--project",
        str(tmp_path),
        "--set",
        "finetune.base_model=Qwen/Qwen2.5-0.5B-Instruct",
        check=False,
    )
    assert proc.returncode == 2
    assert "finetune.base_model 'Qwen/Qwen2.5-0.5B-Instruct'" in proc.stderr and "project.offline" in proc.stderr
    assert not (tmp_path / "data" / "prepared").exists() and not (tmp_path / "mlruns.db").exists()
