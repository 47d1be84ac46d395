"""Every shipped params file parses; every malformed one fails naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmops.config import PARAMS_DIR, PROFILES, ParamsError, load_gates, load_params

INVALID = Path(__file__).parent / "fixtures" / "invalid_params"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile):
    params = load_params(profile)
    assert params.synthesize.teacher.kind in {"openai", "transformers", "callable"}


def test_every_params_file_is_a_profile_or_gates():
    names = {p.stem for p in PARAMS_DIR.glob("*.yaml")}
    gates = {n for n in names if n.startswith("gates")}
    assert names == {"base", *gates, *PROFILES}
    for name in gates:
        loaded = load_gates(PARAMS_DIR / f"{name}.yaml")
        assert set(loaded.poc.min) <= set(loaded.prod.min)
    assert {load_params(p).gates for p in PROFILES} <= {f"{n}.yaml" for n in gates}


def test_base_yaml_holds_only_real_overrides():
    """Defaults live in the code; base.yaml may only change them, never repeat them."""
    import yaml

    from slmops.config import Params
    from slmops.flows.runtime import flatten

    defaults = flatten(Params().model_dump(mode="json"))
    base = flatten(yaml.safe_load((PARAMS_DIR / "base.yaml").read_text()) or {})
    assert [k for k, v in base.items() if defaults.get(k) == v] == []


def test_a_profile_can_extend_another_and_overrides_apply_last():
    params = load_params("smoke-reviews", overrides=["finetune.training.epochs=2"])
    smoke = load_params("smoke")
    assert params.task == "review_insights" and params.demo.student == smoke.demo.student  # from smoke
    assert params.finetune.training.epochs == 2 and params.finetune.training.max_length == 160
    assert params.model_name == "review-insights-slm"


def test_a_partial_section_keeps_the_other_defaults_of_that_section():
    params = load_params("smoke")  # sets augment_sampling: {max_tokens: 48} only
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
        load_params("smoke", extra=INVALID / fixture)
    assert expected in str(err.value)
    assert fixture in str(err.value)


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ParamsError, match="unknown profile 'nope'"):
        load_params("nope")


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

    gates = load_gates().model_dump()
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

    params = load_params("smoke-reviews", overrides=["gates=gates.yaml"])  # ticket_triage's gates
    problems = check(params, tmp_path)
    assert any("category_accuracy: the task reports no such metric" in p for p in problems)


def test_an_offline_run_with_a_hub_id_fails_fast_naming_the_model_and_the_switch(tmp_path):
    from tests.conftest import slmops

    proc = slmops(
        "run",
        "--profile",
        "smoke",
        "--work-dir",
        str(tmp_path),
        "--set",
        "finetune.base_model=Qwen/Qwen2.5-0.5B-Instruct",
        check=False,
    )
    assert proc.returncode == 2
    assert "finetune.base_model 'Qwen/Qwen2.5-0.5B-Instruct'" in proc.stderr and "project.offline" in proc.stderr
    assert not (tmp_path / "data" / "prepared").exists() and not (tmp_path / "mlruns.db").exists()
