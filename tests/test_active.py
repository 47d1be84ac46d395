"""Active distillation spends its teacher label calls where the student disagrees or is unsure, never past the
budget; the labelled rows reach the training file; a rerun is answered from the cache alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from slmops.config import ActiveConfig, FinetuneConfig, LoraParams, SynthesizeConfig, TrainingConfig
from slmops.io import load_jsonl, write_jsonl
from slmops.synthesize.active import StudentView, certainty, select
from slmops.tasks import load_task
from slmops.train import active, finetune
from tests import active_teacher
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
CONSTANT = {"category": "billing", "priority": "low", "reply": "お問い合わせありがとうございます。"}


def test_select_takes_disagreements_then_the_least_certain_and_never_a_confident_agreement():
    views = [
        StudentView("billing", "billing", 0.99),  # confidently right: never asked
        StudentView("billing", "shipping", 0.95),  # confidently wrong
        StudentView("account", "account", 0.40),  # right but unsure
        StudentView("defect", None, 0.0, valid=False),  # no valid answer
        StudentView("other", "other", 0.70),  # right, a little unsure
        StudentView("account", "account", 0.92),  # confidently right
    ]
    assert select(views, budget=10, confident=0.9) == [3, 1, 2, 4]
    assert select(views, budget=3, confident=0.9) == [3, 1, 2]  # the budget, exactly
    assert select(views, budget=0, confident=0.9) == []


def test_certainty_reads_the_label_fields_tokens_only():
    import json
    import math

    text = json.dumps({"category": "billing", "priority": "low", "reply": "はい"}, ensure_ascii=False)
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)]
    spans = [(text.index('"billing"'), text.index('"billing"') + 9), (text.index('"low"'), text.index('"low"') + 5)]

    def logprob(i: int) -> float:  # sure of the label fields' tokens, unsure of every other token
        start, end = 4 * i, 4 * i + 4
        return math.log(0.95) if any(start < b and end > a for a, b in spans) else math.log(0.1)

    entries = [{"token": t, "logprob": logprob(i)} for i, t in enumerate(tokens)]
    assert certainty(task, json.loads(text), entries) == pytest.approx(0.95)
    assert certainty(task, None, entries) == 0.0


@pytest.fixture(scope="module")
def planted_student(tiny_models, tmp_path_factory) -> Path:
    """A LoRA student trained to answer CONSTANT to everything: confidently right on billing inquiries,
    confidently wrong on every other class."""
    import random

    root = tmp_path_factory.mktemp("planted")
    rows = [r | {"source": "gold"} for r in load_jsonl(tiny_models["prepared"] / "train.jsonl")]
    write_jsonl(root / "train.jsonl", rows)  # the training set active rounds grow (every class)
    # Inputs shaped like the ones active_teacher writes ("<class>の件: " + kana), so that the planted answer holds
    # on them too: trained on the generated inquiries alone, the student sometimes broke its JSON on that text
    # (invalid, so asked about: 1 failure in ~8 runs, with run-to-run float noise deciding near-ties).
    pick = random.Random(0)
    shaped = [
        {"id": f"shaped-{c}-{i}", "input": f"{c}の件: " + "".join(pick.choices(active_teacher.KANA, k=24))}
        for c in active_teacher.CATEGORIES
        for i in range(10)
    ]
    write_jsonl(root / "constant.jsonl", [r | {"expected": CONSTANT} for r in rows + shaped])
    cfg = FinetuneConfig(
        method="lora",
        lora=LoraParams(r=8, alpha=16, modules_to_save=["embed_tokens"]),
        training=TrainingConfig(max_steps=150, batch_size=8, learning_rate=1e-2, max_length=160),
    )
    args = {"train": root / "constant.jsonl", "val": None, "base_model": str(tiny_models["model"])}
    finetune.run(cfg, task=task, out_dir=root / "student", **args)
    return root


def _active(planted: Path, tiny_models, out: Path, cache: Path, budget: int):
    shutil.copytree(planted / "student", out)
    synthesize = SynthesizeConfig.model_validate(
        {"teacher": {"kind": "callable", "target": "tests.active_teacher:teach"}, "attributes": False}
    )
    cfg = ActiveConfig(rounds=1, budget=budget, per_category=3, confident=0.9, epochs=1)
    ft = FinetuneConfig(method="lora", lora=LoraParams(r=8, alpha=16, modules_to_save=["embed_tokens"]))
    ft = ft.model_copy(update={"training": TrainingConfig(batch_size=8, learning_rate=1e-2, max_length=160)})
    return active.run(
        cfg,
        synthesize,
        ft,
        task=task,
        train=planted / "train.jsonl",
        val=None,
        test_inputs=[r["input"] for r in load_jsonl(tiny_models["prepared"] / "test.jsonl")],
        base_model=str(tiny_models["model"]),
        out_dir=out,
        cache_path=cache,
    )


@pytest.mark.parametrize("budget", [15, 40])
def test_label_calls_go_to_the_disagreeing_inputs_within_the_budget(planted_student, tiny_models, tmp_path, budget):
    active_teacher.CALLS.clear()
    result = _active(planted_student, tiny_models, tmp_path / "student", tmp_path / "cache.db", budget)
    writes = [user for kind, user in active_teacher.CALLS if kind == "write"]
    labels = [user for kind, user in active_teacher.CALLS if kind == "label"]
    assert len(writes) == 7 * 3  # 3 new inputs per class
    written_billing = sum(user.startswith("billing") for user in labels)
    assert written_billing == 0  # the student confidently agrees there: no teacher call
    assert len(labels) == min(budget, 6 * 3)  # the budget, or every disagreement when it is larger
    summary = result.active
    assert summary["label_calls"] == len(labels) <= budget
    assert summary["rounds"][0]["disagreed"] == 6 * 3

    training = load_jsonl(tmp_path / "student" / "active" / "train.jsonl")
    added = [r for r in training if r["source"] == "teacher_active"]
    assert sorted(r["input"] for r in added) == sorted(labels)  # every labelled row reached the training file
    assert all(r["expected"]["category"] in r["input"] for r in added)  # with the teacher's label
    assert len(training) == len(load_jsonl(planted_student / "train.jsonl")) + len(added)

    active_teacher.CALLS.clear()  # the same params again, the same cache: nothing reaches the teacher
    again = _active(planted_student, tiny_models, tmp_path / "again", tmp_path / "cache.db", budget)
    assert active_teacher.CALLS == [] and again.teacher_calls == 0 and again.cache_hits > 0
    assert result.teacher_calls == len(writes) + len(labels)  # every call that reached the teacher, counted
    assert again.active["label_calls"] == summary["label_calls"]


def test_without_rounds_the_finetune_stage_reads_no_active_param_and_runs_no_active_code():
    """A profile without ``active`` keeps its finetune cache key and dvc.yaml: editing the active modules or
    synthesize's params reruns nothing there. With rounds, both are the stage's."""
    from slmops.config import load_params
    from slmops.flows.codedeps import PACKAGE_DIR, closure
    from slmops.flows.stages import STAGES, Ctx, code_modules, stage_params

    def stage(*overrides: str) -> tuple[tuple[str, ...], set[str]]:
        ctx = Ctx(load_params("smoke", project=TRIAGE, overrides=list(overrides)), TRIAGE)
        files = {f.relative_to(PACKAGE_DIR).as_posix() for f in closure(code_modules(STAGES["finetune"], ctx))}
        return stage_params(STAGES["finetune"], ctx), files

    params, files = stage()
    assert stage("active.budget=5", "active.rounds=0") == (params, files)
    assert params == ("project.seed", "task", "finetune", "loop.init_from")
    assert not {"train/active.py", "synthesize/active.py"} & files
    on_params, on_files = stage("active.rounds=1")
    assert {"active", "synthesize", "pii"} <= set(on_params)
    assert {"train/active.py", "synthesize/active.py", "synthesize/augment.py"} <= on_files
