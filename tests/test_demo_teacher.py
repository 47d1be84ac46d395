"""The demo's rules/lexicon teacher (``kind: callable``): labels, self-instruct, the synthesize stage, and the
hand-written dev set staying out of everything but evaluation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmops.config import CallableTeacherConfig, SynthesizeConfig
from slmops.demo import generate, world
from slmops.demo.phrasebank import PROBLEMS
from slmops.demo.teacher import answer
from slmops.io import load_jsonl, write_jsonl
from slmops.synthesize.stage import run
from slmops.tasks import load_task
from slmops.text.dedup import NearDupIndex
from tests.projects import TRIAGE

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT / "src/slmops/templates/ticket_triage/data/dev_handwritten.jsonl"
TARGET = "slmops.demo.teacher:answer"
task = load_task("ticket_triage", TRIAGE)


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("注文した本が一週間たっても届きません。", "shipping"),
        ("同じ商品で2回課金されています。返金してください。", "billing"),
        ("パスワードを忘れてログインできません。", "account"),
        ("届いたケトルのスイッチが壊れていて、お湯が沸きません。", "defect"),
        ("アプリを開くとエラーが出て落ちます。", "technical"),
        ("来月で解約したいです。", "cancellation"),
        ("年末年始の営業時間を教えてください。", "other"),
    ],
)
def test_labelling_request_gets_valid_task_json(text, category):
    label, reason = task.parse_output(answer(task.build_teacher_messages(text)))
    assert reason is None and label is not None
    assert label.category == category
    assert label.reply == world.gold_reply(label.category, label.priority)


def test_a_bare_inquiry_as_the_serve_fallback_sends_it_is_labelled_too():
    label, _ = task.parse_output(answer(task.build_messages("至急!荷物が届かない")))
    assert label is not None and (label.category, label.priority) == ("shipping", "urgent")


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("請求書の再発行をお願いします。急ぎではありません。", "low"),
        ("請求書の再発行をお願いします。至急ではないですが今週中に。", "high"),
        ("請求書の再発行をお願いします。", "medium"),
        ("請求書の再発行を今日中にお願いします。", "urgent"),
    ],
)
def test_priority_reads_cues_and_negated_urgency(text, priority):
    label, _ = task.parse_output(answer(task.build_teacher_messages(text)))
    assert label is not None and label.priority == priority


def test_negated_words_do_not_count():  # "退会ではなく一時停止" asks to pause the account, not to leave
    label, _ = task.parse_output(answer(task.build_teacher_messages("退会ではなく一時停止はできますか。")))
    assert label is not None and label.category == "account"


def test_labels_the_generated_data_it_teaches_from():
    sets = generate.generate(seed=7, n_seed=140, n_pool=7, n_test=70)
    rows = sets["seed"] + sets["test"]
    outputs = [answer(task.build_teacher_messages(r["input"])) for r in rows]
    metrics = task.compute_metrics(outputs, [r["expected"] for r in rows])
    assert metrics["json_valid_rate"] == 1.0
    assert metrics["category_accuracy"] >= 0.95


@pytest.mark.parametrize("category", sorted(PROBLEMS))
def test_self_instruct_writes_a_new_inquiry_of_the_category(category):
    examples = [r["input"] for r in generate.generate(seed=3, n_seed=70, n_pool=7, n_test=7)["seed"]][:10]
    written = [answer(task.build_augment_messages(category, ex)) for ex in examples]
    assert written == [answer(task.build_augment_messages(category, ex)) for ex in examples]  # deterministic
    assert len(set(written)) >= 5
    for example, text in zip(examples, written, strict=True):
        assert text != example and task.parse_output(text)[0] is None  # an inquiry, not a label
        label, _ = task.parse_output(answer(task.build_teacher_messages(text)))
        assert label is not None and label.category == category


def test_self_instruct_never_returns_its_example():
    messages = task.build_augment_messages("billing", "x")
    first = answer(messages)
    assert answer(task.build_augment_messages("billing", first)) != first


ANSWERS_SCRIPT = """
import json, sys
from slmops.demo import generate
from slmops.demo.teacher import answer
sets = generate.generate(seed=11, n_seed=70, n_pool=35, n_test=7)
cats = ["billing", "shipping", "account", "defect", "technical", "cancellation", "other"]
out = []
for i, row in enumerate(sets["seed"] + sets["pool"]):
    c, text = cats[i % 7], row["input"]
    rewrite = f"Rewrite ... so that its category becomes {c}. Inquiry:\\n{text}"
    out.append(answer([{"role": "user", "content": rewrite}]))
    ask = f"Write one new inquiry of category {c}. Example:\\n{text}\\nAttributes: register=keigo, noise=two_issues"
    out.append(answer([{"role": "user", "content": ask}]))
    out.append(answer([{"role": "user", "content": text}]))
json.dump(out, sys.stdout, ensure_ascii=False)
"""


def test_the_same_requests_get_the_same_answers_in_every_process():
    """Python hashes strings differently in each process (PYTHONHASHSEED): a rewrite that walked a set in its
    iteration order gave another word in another process, so two `make demo` runs trained on different rows."""
    import json
    import os
    import subprocess
    import sys

    def answers(hash_seed: str) -> list[str]:
        env = os.environ | {"PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", ANSWERS_SCRIPT], env=env, capture_output=True, check=True)
        return json.loads(done.stdout)

    first, second = answers("1"), answers("2")
    assert len(first) > 300 and sum(a != b for a, b in zip(first, second, strict=True)) == 0


def test_self_instruct_for_an_unknown_category_is_an_error():
    with pytest.raises(ValueError, match="unknown category"):
        answer(task.build_augment_messages("weather", "晴れですか"))


def test_the_phrase_bank_holds_no_near_duplicate_of_a_dev_set_inquiry():
    index = NearDupIndex(threshold=0.5)
    for row in load_jsonl(DEV_SET):
        index.add(row["input"])
    copies = [p for problems in PROBLEMS.values() for p in problems if index.find(p) is not None]
    assert copies == []


def test_the_dev_set_is_hand_labelled_and_balanced():
    rows = load_jsonl(DEV_SET)
    assert len(rows) >= 120 and len({r["id"] for r in rows}) == len(rows)
    per_category = {c: sum(r["expected"]["category"] == c for r in rows) for c in task.fields["category"].values}
    assert min(per_category.values()) >= 15
    assert all(r["expected"]["priority"] in task.fields["priority"].values for r in rows)


# Code that may read the hand-written dev set: evaluation only. Training, generation and synthesis never may.
# The example's profiles/loop.yaml: `slmops loop demo` measures the served versions on it offline
# (slmops/flows/loop_demo.py:accuracy); it never sends it to the server, so it never reaches the inference log,
# the harvest or training.
DEV_SET_READERS_ALLOWED = {"src/slmops/evaluate/stage.py", "src/slmops/templates/ticket_triage/profiles/loop.yaml"}


def _files_naming(name: str, folders: list[str]) -> set[str]:
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".yaml", ".yml", ".toml", ".cfg"} and name in path.read_text(errors="ignore"):
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_only_evaluation_code_names_the_dev_set():
    name = DEV_SET.name
    assert "benchmarks/demo_teacher.py" in _files_naming(name, ["benchmarks"])  # the scan does find readers
    readers = _files_naming(name, ["src"]) | {
        p for p in ("dvc.yaml", "Makefile") if (ROOT / p).exists() and name in (ROOT / p).read_text()
    }
    assert readers <= DEV_SET_READERS_ALLOWED, f"only evaluation may read {name}: {sorted(readers)}"
    assert not re.search(r"dev_handwritten", (ROOT / "src/slmops/demo/generate.py").read_text())


def test_synthesize_with_the_callable_teacher_writes_a_training_file(tmp_path):
    sets = generate.generate(seed=11, n_seed=28, n_pool=28, n_test=14)
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("seed", "pool", "test")}
    for name, path in paths.items():
        write_jsonl(path, sets[name])
    teacher = CallableTeacherConfig(target=TARGET, model="demo-rules-v1")
    cfg = SynthesizeConfig(teacher=teacher, augment_per_category=2, max_class_share=1.0)
    result = run(
        cfg,
        task=task,
        train=paths["seed"],
        pool=paths["pool"],
        test=paths["test"],
        out_dir=tmp_path / "out",
        cache_path=tmp_path / "cache.sqlite",
    )
    rows = load_jsonl(result.out_file)
    sources = {s: sum(r["source"] == s for r in rows) for s in ("gold", "teacher_label", "teacher_augment")}
    assert sources["teacher_label"] >= 20 and sources["teacher_augment"] >= 10, (sources, result.rejected)
    assert result.reject_rate <= 0.1
    versions = {r["provenance"]["model_version"] for r in rows if r["source"] != "gold"}
    assert versions == {f"demo-rules-v1+{answer.version()}"}  # the rules' hash: a changed lexicon is a new model
    assert all(task.parse_output(task.format_output(r["expected"]))[0] is not None for r in rows)


def test_the_rules_hash_is_part_of_the_model_version_only_where_the_function_has_one():
    from slmops.teacher.callable import CallableTeacher

    ours = CallableTeacher(CallableTeacherConfig(target=TARGET, model="demo-rules-v1"))
    plain = CallableTeacher(CallableTeacherConfig(target="json:dumps", model="rules"))
    assert ours.model_version == f"demo-rules-v1+{answer.version()}" and len(answer.version()) == 12
    assert plain.model_version == "rules"


def test_a_narrower_seed_set_leaves_phrasings_only_the_pool_and_test_show():
    sets = generate.generate(seed=5, n_seed=280, n_pool=280, n_test=280, seed_phrasing_share=0.5)
    held_back = [
        p for phrasings in world.PROBLEMS.values() for p in phrasings[round(len(phrasings) * 0.5) :] if "{" not in p
    ]
    seen = {name: {p for p in held_back if any(p in r["input"] for r in sets[name])} for name in sets}
    assert seen["seed"] == set()
    assert len(seen["pool"]) >= len(held_back) // 2 and len(seen["test"]) >= len(held_back) // 2
