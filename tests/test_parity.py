"""The parity gate compares trained -> merged -> ONNX -> quantized -> served and refuses a planted divergence."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from slmops.evaluate.parity import (
    ParityFigures,
    ParityModel,
    ParityThresholds,
    StepFigures,
    compare_chain,
    decide_parity,
    label_of,
)
from slmops.io import load_jsonl
from slmops.tasks import load_task
from tests.projects import REVIEWS, TRIAGE, TRIAGE_GATES

task = load_task("ticket_triage", TRIAGE)


def _step(name: str, reference: str, output: float = 1.0, label: float = 1.0, logit: float | None = None):
    return StepFigures(
        step=name,
        reference=reference,
        examples=10,
        output_agreement=output,
        label_agreement=label,
        max_prefill_logit_diff=logit,
        differing_examples=list(range(round(10 * (1 - output)))),
    )


def test_decide_parity_names_the_step_that_diverged():
    thresholds = ParityThresholds(min_output_agreement=0.9, min_label_agreement=0.95, max_prefill_logit_diff=1e-3)
    ok = ParityFigures(steps=[_step("merged", "trained", logit=1e-5), _step("int8", "onnx_fp32", 0.9)])
    assert decide_parity(ok, thresholds).passed
    bad = ParityFigures(
        steps=[_step("merged", "trained", logit=1e-5), _step("onnx_fp32", "merged", logit=0.5), _step("int8", "x", 0.5)]
    )
    decision = decide_parity(bad, thresholds)
    assert not decision.passed and decision.checks == {
        "parity_merged": True,
        "parity_onnx_fp32": False,
        "parity_int8": False,
    }
    assert decision.reasons[0].startswith("parity: onnx_fp32 diverged from merged: max prefill logit difference")
    assert "greedy output agreement 0.500 < 0.9 (examples 0, 1, 2, 3, 4)" in decision.reasons[1]


def test_each_quantized_form_is_compared_with_onnx_fp32_and_judged_on_its_own_steps():
    answers = {"merged": "a", "onnx_fp32": "a", "int8": "a", "served_int8": "a", "int4": "b", "served_int4": "b"}
    chain = [ParityModel("merged", lambda m, n: answers["merged"]), ParityModel("onnx_fp32", lambda m, n: "a")]
    for form in ("int8", "int4"):
        chain.append(ParityModel(form, lambda m, n, f=form: answers[f], reference="onnx_fp32"))
        chain.append(ParityModel(f"served_{form}", lambda m, n, f=form: answers[f"served_{f}"], reference=form))
    figures = compare_chain([[{"role": "user", "content": "x"}]], chain, task, max_tokens=8)
    assert [(s.step, s.reference) for s in figures.steps] == [
        ("onnx_fp32", "merged"),
        ("int8", "onnx_fp32"),
        ("served_int8", "int8"),
        ("int4", "onnx_fp32"),  # not against served_int8, the step before it
        ("served_int4", "int4"),
    ]
    thresholds = ParityThresholds(min_output_agreement=1.0, min_label_agreement=0.0)
    assert decide_parity(figures, thresholds, form="int8").passed
    int4 = decide_parity(figures, thresholds, form="int4")
    assert not int4.passed and int4.reasons[0].startswith("parity: int4 diverged from onnx_fp32")
    assert not decide_parity(figures, thresholds).passed  # without a form, every step counts


def test_registration_skips_a_smaller_form_that_fails_its_parity():
    from slmops.config import QuantizeConfig, load_gates, load_params
    from slmops.flows.pipeline import _choose_form

    params = load_params("smoke", project=TRIAGE).model_copy(
        update={"quantize": QuantizeConfig(candidates=["int8", "int4"])}
    )
    gates = load_gates(TRIAGE_GATES)
    good = {"json_valid_rate": 1.0, "category_accuracy": 1.0, "priority_accuracy": 1.0, "latency_p95_ms": 1.0}
    metrics = {"student_int8": good | {"size_mb": 4.0}, "student_int4": good | {"size_mb": 2.0}}
    steps = [_step("onnx_fp32", "merged", logit=1e-5), _step("int8", "onnx_fp32"), _step("served_int8", "int8")]
    parity = ParityFigures(steps=steps + [_step("int4", "onnx_fp32", 1.0), _step("served_int4", "int4")])
    assert _choose_form(params, metrics, parity.model_dump(), gates)[0] == "int4"  # the smallest that passes
    parity.steps[3] = _step("int4", "onnx_fp32", output=0.2, label=0.2)
    form, decision, parity_decision = _choose_form(params, metrics, parity.model_dump(), gates)
    assert form == "int8" and parity_decision.passed, parity_decision.reasons


def test_labels_are_the_categorical_fields_of_the_parsed_answer():
    a = '{"category": "billing", "priority": "high", "reply": "確認します"}'
    b = '{"category": "billing", "priority": "high", "reply": "お待ちください"}'
    assert label_of(task, a) == label_of(task, b) == (("category", "billing"), ("priority", "high"))
    assert label_of(task, "not json") is None


def test_labels_leave_out_free_text_when_a_task_has_no_enum():
    """review_insights has an integer, a multi-label field and a summary: its label is rating and the aspect set,
    so two answers that word the summary differently agree (the summary is output agreement's business)."""
    reviews = load_task("review_insights", REVIEWS)
    a = '{"rating": 4, "aspects": ["price", "quality"], "summary": "安くて良い"}'
    b = '{"rating": 4, "aspects": ["quality", "price"], "summary": "値段の割に品質が良い"}'
    assert label_of(reviews, a) == label_of(reviews, b) == (("rating", 4), ("aspects", ("price", "quality")))
    assert label_of(reviews, a) != label_of(reviews, a.replace('"rating": 4', '"rating": 3'))
    assert label_of(reviews, a) != label_of(reviews, a.replace('["price", "quality"]', '["price"]'))


def _corrupt_int8(src, dst):
    """A copy of the int8 model with one weight corrupted: its int8 values replaced by noise, its scale blown up
    (a random-init model's near-flat logits shrug off noise at the original scale)."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    weights = [i for i in inits.values() if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    target = max(weights, key=lambda i: (np.prod(i.dims), i.name))
    noise = np.random.default_rng(0).integers(-127, 128, size=tuple(target.dims), dtype=np.int8)
    target.CopyFrom(numpy_helper.from_array(noise, target.name))
    scale = inits[target.name.replace("_quantized", "_scale")]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 1000, scale.name))
    onnx.save(model, str(dst / "model.onnx"))
    return dst


@pytest.mark.slow
def test_the_chain_agrees_and_a_corrupted_int8_weight_is_refused(tiny_models, tmp_path):
    from slmops.inference.chat_model import ChatModel
    from slmops.serve.app import BackgroundServer
    from slmops.text import pii

    rows = load_jsonl(tiny_models["prepared"] / "test.jsonl")[:6]
    # The fixture's files are raw generator output; the prepare stage (and the server) mask inputs first.
    prompts = [task.build_messages(pii.mask(r["input"])) for r in rows]
    merged = ParityModel.local("merged", ChatModel.load(tiny_models["model"]))
    onnx_fp32 = ParityModel.local("onnx_fp32", ChatModel.load(tiny_models["onnx"]))
    thresholds = ParityThresholds(min_output_agreement=0.8, min_label_agreement=0.8, max_prefill_logit_diff=1e-3)
    for folder, expect_pass in (
        (tiny_models["int8"], True),
        (_corrupt_int8(tiny_models["int8"], tmp_path / "bad"), False),
    ):
        with BackgroundServer.for_model_dir(folder, "student") as server:
            chain = [
                merged,
                onnx_fp32,
                ParityModel.local("int8", ChatModel.load(folder), fp32=False),
                ParityModel.http("served", server.base_url, "student"),
            ]
            figures = compare_chain(prompts, chain, task, max_tokens=12)
        decision = decide_parity(figures, thresholds)
        by_step = {s.step: s for s in figures.steps}
        assert by_step["onnx_fp32"].max_prefill_logit_diff < 1e-3
        assert by_step["served"].output_agreement == 1.0  # the endpoint answers what the model folder answers
        assert decision.passed is expect_pass, (decision.reasons, figures)
        if not expect_pass:
            assert decision.reasons[0].startswith("parity: int8 diverged from onnx_fp32")
