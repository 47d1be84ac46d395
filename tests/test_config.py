"""Every shipped params file parses; every malformed one fails naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import PARAMS_DIR, PROFILES, ParamsError, load_gates, load_params

INVALID = Path(__file__).parent / "fixtures" / "invalid_params"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile):
    params = load_params(profile)
    assert params.synthesize.teacher.kind in {"openai", "transformers", "callable"}


def test_every_params_file_is_a_profile_or_gates():
    names = {p.stem for p in PARAMS_DIR.glob("*.yaml")}
    assert names == {"base", "gates", *PROFILES}
    gates = load_gates()
    assert gates.prod.min_category_accuracy >= gates.pilot.min_category_accuracy >= gates.poc.min_category_accuracy


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("unknown_key.yaml", "finetune.methd: Extra inputs are not permitted"),
        ("bad_type.yaml", "prepare.val_fraction"),
        ("unknown_teacher_kind.yaml", "synthesize.teacher"),
        ("teacher_typo.yaml", "synthesize.teacher.base_ulr"),
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
    ("stage", "key", "value", "expected"),
    [
        ("pilot", "min_category_accuracy", 0.5, "pilot.min_category_accuracy 0.5 is looser than poc's 0.6"),
        ("prod", "max_size_mb", 100, "prod.max_size_mb 100.0 is looser than pilot's 50.0"),
        ("prod", "max_p95_latency_ms", None, "prod.max_p95_latency_ms None is looser than pilot's 1000.0"),
    ],
)
def test_gates_must_get_stricter_at_each_stage(tmp_path, stage, key, value, expected):
    import yaml

    gates = load_gates().model_dump()
    gates["poc"]["min_category_accuracy"] = 0.6
    gates[stage][key] = value
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump(gates))
    with pytest.raises(ParamsError) as err:
        load_gates(path)
    assert f"gates.yaml: {expected}" in str(err.value)
