"""Teacher backends and the synthesize stage: retries, caching, every reject reason, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config import CallableTeacherConfig, OpenAITeacherConfig, SamplingConfig, SynthesizeConfig
from components.io import load_jsonl, write_jsonl
from components.synthesize import RejectRateExceeded, run
from components.tasks import ticket_triage as task
from components.teacher import open_teacher
from tests.fake_teacher import FakeTeacher, label_json


def _cfg(url: str, **kw) -> OpenAITeacherConfig:
    return OpenAITeacherConfig(base_url=url, model="fake", max_concurrency=4, max_retries=3, timeout_s=5, **kw)


def test_openai_backend_retries_429_and_500_honouring_retry_after():
    def script(messages, attempt):
        if attempt == 0:
            return 429, None, "stop", {"Retry-After": "0"}
        if attempt == 1:
            return 500, None, "stop", {}
        return 200, label_json(), "stop", {}

    with FakeTeacher(script) as fake, open_teacher(_cfg(fake.base_url)) as teacher:
        [response] = teacher.complete([[{"role": "user", "content": "q"}]], SamplingConfig())
    assert response.error is None and json.loads(response.text)["category"] == "billing"
    assert len(fake.calls) == 3


def test_openai_backend_does_not_retry_other_4xx():
    with FakeTeacher(lambda m, a: (400, None, "stop", {})) as fake, open_teacher(_cfg(fake.base_url)) as teacher:
        [response] = teacher.complete([[{"role": "user", "content": "q"}]], SamplingConfig())
    assert response.error == "http_400" and len(fake.calls) == 1


def test_openai_backend_sends_the_key_from_the_named_env_var(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test-123")
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {})) as fake:
        with open_teacher(_cfg(fake.base_url, api_key_env="MY_TEACHER_KEY")) as teacher:
            teacher.complete([[{"role": "user", "content": "q"}]], SamplingConfig())
    assert fake.auth == ["Bearer sk-test-123"]


def _inputs(tmp: Path, n_pool: int) -> dict[str, Path]:
    gold = [
        {
            "id": f"g{i}",
            "input": f"請求について質問{i}です。",
            "expected": {"category": c, "priority": "low", "reply": "確認します。"},
        }
        for i, c in enumerate(["billing", "shipping"] * 2)
    ]
    pool = [{"id": f"p{i}", "input": f"問い合わせ番号{i}について教えてください。"} for i in range(n_pool)]
    test = [{"id": "t0", "input": "テスト用の問い合わせです。", "expected": {"category": "other", "priority": "low"}}]
    paths = {"train": tmp / "train.jsonl", "pool": tmp / "pool.jsonl", "test": tmp / "test.jsonl"}
    for name, rows in (("train", gold), ("pool", pool), ("test", test)):
        write_jsonl(paths[name], rows)
    return paths


def _synthesize(cfg: SynthesizeConfig, paths: dict[str, Path], tmp_path: Path, out: str = "out"):
    return run(
        cfg,
        train=paths["train"],
        pool=paths["pool"],
        test=paths["test"],
        out_dir=tmp_path / out,
        cache_path=tmp_path / "cache.sqlite",
    )


BAD_ANSWERS = {  # pool row index -> (content, finish_reason, expected reject reason)
    0: ("", "stop", "empty"),
    1: ("this is not json", "stop", "invalid_json"),
    2: ('{"category": "spam", "priority": "high", "reply": "x"}', "stop", "schema_violation"),
    3: (label_json(), "length", "truncated"),
    4: ("I'm sorry, I cannot help with that.", "stop", "refusal"),
    5: (task.SYSTEM_PROMPT + " はい。", "stop", "echoes_system_prompt"),
}


def _script(messages, attempt):
    text = messages[-1]["content"]
    if text.startswith("Write one new"):  # self-instruct: echo a test input once (contamination), else new text
        return (
            200,
            ("テスト用の問い合わせです。" if "billing" in text else "配送が遅れている件で連絡しました。"),
            "stop",
            {},
        )
    if text.startswith("問い合わせ番号"):
        index = int(text.removeprefix("問い合わせ番号").split("に")[0])
        if index in BAD_ANSWERS:
            content, finish, _ = BAD_ANSWERS[index]
            return 200, content, finish, {}
    category = "shipping" if "配送" in text else "billing"
    return 200, label_json(category), "stop", {}


def test_synthesize_rejects_every_bad_answer_and_never_trains_on_it(tmp_path):
    paths = _inputs(tmp_path, n_pool=10)
    with FakeTeacher(_script) as fake:
        cfg = SynthesizeConfig(teacher=_cfg(fake.base_url), augment_per_category=1, max_reject_rate=1.0)

        result = _synthesize(cfg, paths, tmp_path)
        first_calls = len(fake.calls)
        again = _synthesize(cfg, paths, tmp_path, "out2")
        assert len(fake.calls) == first_calls, "a rerun must be answered from the cache"
    assert again.cache_hits >= 10 and again.teacher_calls == 0

    for _, _, reason in BAD_ANSWERS.values():
        assert result.rejected.get(reason) == 1, (reason, result.rejected)
    assert result.rejected.get("duplicate_or_test_contamination") == 1
    train = load_jsonl(tmp_path / "out" / "train.jsonl")
    inputs = {r["input"] for r in train}
    for index in BAD_ANSWERS:
        assert f"問い合わせ番号{index}について教えてください。" not in inputs
    assert "テスト用の問い合わせです。" not in inputs  # decontaminated
    for row in train:
        if row["source"] != "gold":
            assert {"teacher_id", "model_version", "template_hash", "sampling", "created_at"} <= set(row["provenance"])
    assert {r["source"] for r in train} == {"gold", "teacher_label", "teacher_augment"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rejected"] == result.rejected and "train.jsonl" in manifest["files"]


def test_synthesize_fails_with_the_breakdown_when_too_many_answers_are_bad(tmp_path):
    paths = _inputs(tmp_path, n_pool=10)
    with FakeTeacher(_script) as fake:
        cfg = SynthesizeConfig(teacher=_cfg(fake.base_url), augment_per_category=0, max_reject_rate=0.2)
        with pytest.raises(RejectRateExceeded, match="invalid_json"):
            _synthesize(cfg, paths, tmp_path)
    assert not (tmp_path / "out" / "train.jsonl").exists()


def rules_teacher(messages):
    """A callable teacher: a keyword rule engine standing in for an existing system."""
    text = messages[-1]["content"]
    if text.startswith("Write one new"):
        raise RuntimeError("this system cannot write inquiries")
    return label_json("shipping" if "配送" in text else "billing")


def test_callable_backend_labels_and_counts_its_failures(tmp_path):
    paths = _inputs(tmp_path, n_pool=3)
    cfg = SynthesizeConfig(
        teacher=CallableTeacherConfig(target="tests.test_teacher:rules_teacher"),
        augment_per_category=1,
        max_reject_rate=1.0,
    )
    result = _synthesize(cfg, paths, tmp_path)
    assert result.counts["teacher_label"] == 3
    assert result.rejected == {"teacher_error": 2}  # one self-instruct ask per category, both failed
