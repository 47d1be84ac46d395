"""Hybrid serving: answers that fail the task schema or the confidence threshold go to the teacher endpoint."""

from __future__ import annotations

import httpx
import pytest

from slmops.config import FallbackConfig, OpenAITeacherConfig, ServeConfig
from slmops.inference.chat_model import ChatModel, Completion
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from slmops.serve.fallback import Fallback
from slmops.tasks import load_task
from slmops.teacher.openai import OpenAITeacher
from tests.fake_teacher import FakeTeacher, label_json
from tests.projects import TRIAGE

TASK = load_task("ticket_triage", TRIAGE)
TEACHER_ANSWER = label_json("shipping", "high", "配送状況を確認いたします。")


def _teacher_cfg(fake: FakeTeacher) -> OpenAITeacherConfig:
    return OpenAITeacherConfig(base_url=fake.base_url, model="big", max_retries=0, timeout_s=10)


def _serve(model: ChatModel, fake: FakeTeacher, log, **fallback):
    cfg = FallbackConfig(teacher=_teacher_cfg(fake), **fallback)
    teacher = OpenAITeacher(cfg.teacher)
    app = create_app(model, "slm", log, ServeConfig(max_tokens_cap=32), fallback=Fallback(teacher, cfg, TASK))
    return BackgroundServer(app), teacher


def _ask(url: str, content: str = "荷物が届きません。電話は090-1234-5678", **extra) -> httpx.Response:
    body = {"model": "slm", "messages": [{"role": "user", "content": content}], "max_tokens": 24, **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def _fallback_counts(url: str) -> dict[str, float]:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("slmops_fallbacks_total")
    }


@pytest.fixture(scope="module")
def untrained(tiny_models) -> ChatModel:
    return ChatModel.load(tiny_models["int8"])  # random weights: its answers are never valid task JSON


def test_an_invalid_student_answer_is_answered_by_the_teacher_and_counted(untrained, tmp_path):
    log = tmp_path / "log.jsonl"
    with FakeTeacher(lambda messages, attempt: (200, TEACHER_ANSWER, "stop", {})) as fake:
        server, teacher = _serve(untrained, fake, log)
        with server, teacher:
            url = f"http://127.0.0.1:{server.port}"
            r = _ask(url)
            assert r.status_code == 200 and r.headers["x-slmops-served-by"] == "teacher"
            assert r.json()["choices"][0]["message"]["content"] == TEACHER_ANSWER
            assert _fallback_counts(url) == {"invalid_output": 1.0}
            assert _ask(url, max_tokens=None).headers["x-slmops-served-by"] == "teacher"
        # PII is masked before the input leaves for the teacher; the teacher gets the task's instructions and
        # schema, and the client's max_tokens (or fallback.max_tokens, not the student's window budget).
        assert fake.calls == ["荷物が届きません。電話は[PHONE]"] * 2
        assert fake.bodies[0]["messages"][0]["role"] == "system" and fake.bodies[0]["response_format"]
        assert [b["max_tokens"] for b in fake.bodies] == [24, FallbackConfig().max_tokens]
    row = load_jsonl(log)[0]
    assert row["served_by"] == "teacher" and row["fallback"] == "invalid_output" and row["output"] == TEACHER_ANSWER


@pytest.mark.parametrize(
    "teacher_reply",
    [(200, "申し訳ありませんが、お答えできません。", "stop", {}), (500, None, "stop", {})],
    ids=["teacher-invalid-too", "teacher-down"],
)
def test_when_the_teacher_fails_too_the_student_answer_is_sent(untrained, tmp_path, teacher_reply):
    log = tmp_path / "log.jsonl"
    with FakeTeacher(lambda messages, attempt: teacher_reply) as fake:
        server, teacher = _serve(untrained, fake, log)
        with server, teacher:
            url = f"http://127.0.0.1:{server.port}"
            r = _ask(url)
            assert r.status_code == 200 and r.headers["x-slmops-served-by"] == "student"
            metrics = httpx.get(url + "/metrics").text
            assert 'slmops_errors_total{kind="fallback_failed"} 1.0' in metrics
        assert len(fake.calls) == 1
    [row] = load_jsonl(log)
    assert row["served_by"] == "student" and row["fallback"] == "invalid_output"
    assert row["output"] == r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("threshold", "served_by"), [(0.999, "teacher"), (1e-9, "student")])
def test_the_confidence_threshold_decides_who_answers(untrained, tmp_path, threshold, served_by):
    with FakeTeacher(lambda messages, attempt: (200, TEACHER_ANSWER, "stop", {})) as fake:
        # Schema failures do not count here: only the confidence of the (random) student's tokens does.
        server, teacher = _serve(
            untrained, fake, tmp_path / "log.jsonl", on_invalid_output=False, min_confidence=threshold
        )
        with server, teacher:
            url = f"http://127.0.0.1:{server.port}"
            assert _ask(url).headers["x-slmops-served-by"] == served_by
            assert _fallback_counts(url) == ({"low_confidence": 1.0} if served_by == "teacher" else {})
    [row] = load_jsonl(tmp_path / "log.jsonl")  # the student's confidence is logged, whoever answered
    assert row["served_by"] == served_by and 0 < row["min_token_prob"] < 1


def test_token_probabilities_are_reported_when_asked(untrained):
    messages = [{"role": "user", "content": "請求について"}]
    plain = untrained.chat(messages, max_tokens=8)
    scored = untrained.chat(messages, max_tokens=8, scores=True)
    assert plain.min_token_prob is None and scored.text == plain.text
    assert 0 < scored.min_token_prob <= scored.mean_token_prob <= 1


def test_fallback_reasons():
    valid = label_json()
    fb = Fallback(teacher=None, cfg=FallbackConfig(min_confidence=0.5), task=TASK)  # type: ignore[arg-type]

    def completion(text: str, min_p: float | None, mean_p: float | None = None) -> Completion:
        return Completion(
            text=text,
            prompt_tokens=1,
            completion_tokens=1,
            finish_reason="stop",
            min_token_prob=min_p,
            mean_token_prob=mean_p,
        )

    assert fb.reason(completion(valid, 0.9, 0.95)) is None
    assert fb.reason(completion(valid, 0.4, 0.95)) == "low_confidence"
    assert fb.reason(completion('{"category": "billing"', 0.9, 0.95)) == "invalid_output"  # cut off
    mean = Fallback(teacher=None, cfg=FallbackConfig(min_confidence=0.5, confidence="mean_token"), task=TASK)  # type: ignore[arg-type]
    assert mean.reason(completion(valid, 0.4, 0.95)) is None
    assert mean.reason(completion(valid, 0.4, 0.45)) == "low_confidence"


def test_serve_refuses_to_start_when_the_configured_teacher_is_missing(tiny_models, tmp_path):
    from tests.conftest import new_project, slmops

    tmp_path = new_project(tmp_path, "ticket_triage")
    # A fallback teacher that cannot be opened (here: a callable whose module does not exist) stops the start.
    args = ("serve", "--model-path", str(tiny_models["int8"]), "--project", str(tmp_path), "--port", "1")
    teacher = 'serve.fallback.teacher={kind: callable, target: "no_such_module:answer"}'
    proc = slmops(*args, "--profile", "smoke", "--set", teacher, check=False)
    assert proc.returncode == 2
    assert "no_such_module" in proc.stderr and "--no-fallback" in proc.stderr
