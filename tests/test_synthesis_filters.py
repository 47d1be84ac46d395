"""Issue 22: new inputs over the attribute grid, the novelty and agreement filters, rows' cells in provenance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmops.config import CallableTeacherConfig, SynthesizeConfig
from slmops.io import flatten, load_jsonl, read_manifest, write_jsonl
from slmops.synthesize.filters import novelty_rejects
from slmops.synthesize.stage import run
from slmops.tasks import load_task
from tests.fake_teacher import label_json
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
TEST_INPUT = "テスト用の問い合わせで、ノートPCの画面が真っ暗になりました。"
GOLD = {  # seed example -> what the planted teacher writes when asked for a new input from it
    "請求書の宛名を会社名に変更したいです。": "テスト用の問い合わせですが、ノートPCの画面が真っ暗になってしまいました",
    "同じ注文で二重に請求されています。": "アプリが起動しなくなりました。再インストールしても同じです。",
    "荷物がまだ届きません。追跡番号も更新されません。": "荷物がまだ届きません。追跡番号が更新されないです。",
    "配達予定日を過ぎても荷物が来ません。": "引っ越し先への転送をお願いしたいのですが、手続きはどうすればいいですか。",
}
CLOSE_TO_TEST, OTHER_CLASS, CLOSE_TO_TRAIN, GOOD = GOLD.values()
REQUESTS: list[list[dict]] = []  # every request the planted teacher got


def planted(messages: list[dict]) -> str:
    """A callable teacher that writes a rewrite of a test input, a rewrite of a training input, an input for
    billing that it then labels technical, and one good shipping input."""
    REQUESTS.append(messages)
    text = messages[-1]["content"]
    if text.startswith("Write one new"):
        example = re.search(r"Example:\n(.*?)(\nAttributes: .*)?$", text, re.S)[1]
        return GOLD[example]
    if "アプリ" in text:
        return label_json("technical")
    return label_json("shipping" if "荷物" in text or "転送" in text else "billing")


TARGET = "tests.test_synthesis_filters:planted"


def _paths(tmp: Path) -> dict[str, Path]:
    classes = ["billing", "billing", "shipping", "shipping"]
    rows = {
        "train": [
            {"id": f"g{i}", "input": t, "expected": {"category": c, "priority": "low", "reply": "確認します。"}}
            for i, (t, c) in enumerate(zip(GOLD, classes, strict=True))
        ],
        "pool": [{"id": "p0", "input": "請求について質問があります。"}],
        "test": [{"id": "t0", "input": TEST_INPUT, "expected": {"category": "defect", "priority": "low"}}],
    }
    paths = {name: tmp / f"{name}.jsonl" for name in rows}
    for name, data in rows.items():
        write_jsonl(paths[name], data)
    return paths


def _run(tmp: Path, **kw):
    REQUESTS.clear()
    paths = _paths(tmp)
    teacher = CallableTeacherConfig(target=TARGET, model="planted")
    cfg = SynthesizeConfig(teacher=teacher, augment_per_category=2, max_class_share=1.0, max_reject_rate=1.0, **kw)
    out = tmp / "out"
    result = run(
        cfg, task=task, train=paths["train"], pool=paths["pool"], test=paths["test"], out_dir=out, cache_path=tmp / "c"
    )
    return result, load_jsonl(out / "train.jsonl"), load_jsonl(out / "rejects.jsonl")


def test_novelty_and_agreement_reject_planted_inputs_and_keep_them_out_of_the_training_file(tmp_path):
    result, train, rejects = _run(tmp_path, novelty_max_similarity=0.6)
    inputs = {r["input"] for r in train}
    assert result.filtered == {"novelty": 2, "agreement": 1}
    assert result.rejected == {"not_novel": 2, "label_mismatch": 1}
    assert not inputs & {CLOSE_TO_TEST, CLOSE_TO_TRAIN, OTHER_CLASS}, "a filtered input reached the training file"
    assert GOOD in inputs and result.counts["teacher_augment"] == 1
    reasons = {r["input"]: r["reason"] for r in rejects}
    assert reasons[CLOSE_TO_TEST].endswith("to a test input") and reasons[CLOSE_TO_TRAIN].endswith("training input")
    assert reasons[OTHER_CLASS] == "label_mismatch"
    manifest = read_manifest(tmp_path / "out")
    assert manifest["filtered"] == result.filtered and manifest["diversity"] == result.diversity
    logged = flatten(result.model_dump(mode="json"))  # what the flow logs to MLflow with the stage's metrics
    assert logged["filtered.novelty"] == 2 and {"diversity.distinct_2", "diversity.coverage"} <= set(logged)


def test_the_filters_can_be_switched_off(tmp_path):
    result, train, _ = _run(tmp_path, novelty_max_similarity=None, agreement=False)
    assert result.filtered == {"novelty": 0, "agreement": 0} and result.rejected == {}
    rows = {r["input"]: r for r in train}
    assert {CLOSE_TO_TEST, CLOSE_TO_TRAIN, OTHER_CLASS, GOOD} <= set(rows)
    assert rows[OTHER_CLASS]["expected"]["category"] == "technical"  # the teacher's label, not the asked class


def test_relabelling_is_blind_and_augment_prompts_name_their_grid_cell(tmp_path):
    result, train, _ = _run(tmp_path, novelty_max_similarity=None)
    writes = [m[-1]["content"] for m in REQUESTS if m[-1]["content"].startswith("Write one new")]
    labels = [m for m in REQUESTS if m[0]["role"] == "system"]
    assert len(writes) == 4 and all(
        re.search(r"\nAttributes: register=\w+, length=\w+, channel=\w+, noise=\w+$", w) for w in writes
    )
    relabelled = [m for m in labels if m[-1]["content"] in GOLD.values()]
    assert len(relabelled) == 4
    assert not any("billing" in m["content"] or "Attributes" in m["content"] for r in relabelled for m in r)
    cells = [r["provenance"]["cell"] for r in train if r["source"] == "teacher_augment"]
    assert len(cells) == 3 and all(set(c) == {"category", "register", "length", "channel", "noise"} for c in cells)
    for c in cells:  # the cell a row records is the cell its prompt named
        assert any(
            w.endswith(f"register={c['register']}, length={c['length']}, channel={c['channel']}, noise={c['noise']}")
            for w in writes
        )
    assert result.diversity["cells_filled"] == 3 and result.diversity["cells_total"] == 2 * 90


def test_without_attributes_the_prompt_is_the_template_alone(tmp_path):
    result, train, _ = _run(tmp_path, novelty_max_similarity=None, attributes=False)
    writes = [m[-1]["content"] for m in REQUESTS if m[-1]["content"].startswith("Write one new")]
    assert writes and not any("Attributes" in w for w in writes)
    assert writes[0] == task.build_augment_messages("billing", writes[0].split("Example:\n")[1])[0]["content"]
    cells = [r["provenance"]["cell"] for r in train if r["source"] == "teacher_augment"]
    assert cells and all(set(c) == {"category"} for c in cells)
    assert result.diversity["cells_total"] == 2


def test_novelty_rejects_a_close_rewrite_and_keeps_a_new_text():
    reasons = novelty_rejects(
        [CLOSE_TO_TEST, CLOSE_TO_TRAIN, GOOD], train_inputs=list(GOLD), test_inputs=[TEST_INPUT], max_similarity=0.6
    )
    assert reasons[0].startswith("not_novel:") and "test" in reasons[0]
    assert reasons[1].startswith("not_novel:") and "training" in reasons[1]
    assert reasons[2] is None
    assert novelty_rejects([CLOSE_TO_TEST], list(GOLD), [TEST_INPUT], None) == [None]
    assert novelty_rejects([TEST_INPUT], [], [TEST_INPUT], 0.99)[0] is not None  # an exact copy scores 1.0


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_novelty_threshold_is_checked_when_params_load(threshold):
    with pytest.raises(ValueError, match="novelty_max_similarity"):
        SynthesizeConfig(novelty_max_similarity=threshold)
