"""Issue 22: contrast rows. The teacher rewrites training inputs into another class; a rewrite the teacher then
labels otherwise, one that is a copy, or one near a test input is rejected and never reaches the training file."""

from __future__ import annotations

import re
from pathlib import Path

from slmops.config import CallableTeacherConfig, SynthesizeConfig
from slmops.demo.teacher import answer, label, rewrite_inquiry
from slmops.io import load_jsonl, write_jsonl
from slmops.synthesize.stage import run
from slmops.tasks import load_task
from tests.fake_teacher import label_json
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)
TEST_INPUT = "テスト用の問い合わせで、ノートPCの画面が真っ暗になりました。"
SOURCES = {  # training input -> (its class, what the planted teacher writes when asked to rewrite it)
    "請求書の宛名を会社名に変更したいです。": ("billing", "GOOD"),
    "同じ注文で二重に請求されています。": ("billing", "MISLABELLED"),
    "荷物がまだ届きません。追跡番号も更新されません。": ("shipping", "COPY"),
    "配達予定日を過ぎても荷物が来ません。": ("shipping", "NEAR_TEST"),
}
ASKED: dict[str, str] = {}  # rewrite -> the class its prompt asked for
LABEL_REQUESTS: list[list[dict]] = []


def planted(messages: list[dict]) -> str:
    text = messages[-1]["content"]
    if asked := re.search(r"category becomes (\w+)\. Inquiry:\n(.*)$", text, re.S):
        target, source = asked[1], asked[2]
        kind = SOURCES[source][1]
        rewrite = {
            "GOOD": f"{source}{target}の件としてです。",
            "MISLABELLED": f"{source}別件です。",
            "COPY": source,
            "NEAR_TEST": TEST_INPUT.replace("。", "！"),
        }[kind]
        ASKED[rewrite] = target
        return rewrite
    LABEL_REQUESTS.append(messages)
    if text in ASKED:  # a rewrite, labelled again without being told the class asked for
        good = text.endswith("の件としてです。")
        return label_json(ASKED[text] if good else next(c for c in ("defect", "other") if c != ASKED[text]))
    return label_json(SOURCES.get(text, ("billing",))[0])


def _run(tmp: Path, contrast_rows: int):
    rows = [
        {"id": f"g{i}", "input": t, "expected": {"category": c, "priority": "low", "reply": "確認します。"}}
        for i, (t, (c, _)) in enumerate(SOURCES.items())
    ]
    paths = {"train": tmp / "train.jsonl", "pool": tmp / "pool.jsonl", "test": tmp / "test.jsonl"}
    write_jsonl(paths["train"], rows)
    write_jsonl(paths["pool"], [])
    write_jsonl(paths["test"], [{"id": "t0", "input": TEST_INPUT, "expected": {"category": "defect"}}])
    teacher = CallableTeacherConfig(target="tests.test_contrast:planted", model="planted")
    cfg = SynthesizeConfig(
        teacher=teacher, augment_per_category=0, contrast_rows=contrast_rows, max_class_share=1.0, max_reject_rate=1.0
    )
    result = run(cfg, task=task, out_dir=tmp / "out", cache_path=tmp / "cache", **paths)
    return result, load_jsonl(tmp / "out" / "train.jsonl"), load_jsonl(tmp / "out" / "rejects.jsonl")


def test_contrast_rows_keep_only_rewrites_the_teacher_labels_as_asked(tmp_path):
    ASKED.clear()
    result, train, rejects = _run(tmp_path, contrast_rows=4)
    assert len(ASKED) == 4  # every training row was rewritten once, each into another class than its own
    contrast = [r for r in train if r["source"] == "teacher_contrast"]
    assert len(contrast) == 1 and result.counts["teacher_contrast"] == 1
    row = contrast[0]
    source = next(s for s in SOURCES if row["input"].startswith(s))
    assert SOURCES[source][1] == "GOOD" and row["expected"]["category"] == ASKED[row["input"]] != "billing"
    assert row["provenance"]["contrast_of"] == "g0"
    inputs = {r["input"] for r in train}
    rejected = set(ASKED) - {row["input"]} - set(SOURCES)  # the copy is its own source, a gold row
    assert len(rejected) == 2 and not inputs & rejected, "a rejected rewrite reached the training file"
    reasons = sorted(r["reason"].split(":")[0] for r in rejects)
    assert reasons == ["copies_example", "label_mismatch", "test_contamination"]
    assert result.filtered["contrast_agreement"] == 1 and result.filtered["contrast_not_novel"] == 0
    relabelled = [m for m in LABEL_REQUESTS if m[-1]["content"] in ASKED]
    assert len(relabelled) == 2 and all([x["role"] for x in m] == ["system", "user"] for m in relabelled)
    assert {m[0]["content"] for m in relabelled} == {task.spec.teacher_instructions}  # blind: the class is not said


def test_no_contrast_rows_by_default(tmp_path):
    ASKED.clear()
    result, train, _ = _run(tmp_path, contrast_rows=0)
    assert not ASKED and "teacher_contrast" not in result.counts and len(train) == len(SOURCES)


def test_the_demo_teacher_swaps_the_words_that_decide_the_category():
    inquiry = "注文した荷物が届かないです。至急確認してください。"
    assert label(inquiry)["category"] == "shipping"
    for target in ("billing", "defect", "account"):
        rewritten = rewrite_inquiry(target, inquiry)
        assert label(rewritten)["category"] == target
        assert rewritten.startswith("注文した") and rewritten.endswith("至急確認してください。")
    prompt = task.build_contrast_messages("billing", inquiry)
    assert answer(prompt) == rewrite_inquiry("billing", inquiry)
