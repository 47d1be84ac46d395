"""Teacher backends: retries, circuit breaker, concurrency and rate limits, the cache, each backend kind."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmops.config import CallableTeacherConfig, OpenAITeacherConfig, SamplingConfig, TransformersTeacherConfig
from slmops.tasks import load_task
from slmops.teacher import open_teacher
from slmops.teacher.base import TeacherUnavailable
from slmops.teacher.cache import ResponseCache, complete_cached
from slmops.teacher.openai import TokenBucket
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher, label_json
from tests.projects import TRIAGE

task = load_task("ticket_triage", TRIAGE)


def _cfg(url: str, **kw) -> OpenAITeacherConfig:
    return OpenAITeacherConfig(
        **{"base_url": url, "model": "fake", "max_concurrency": 4, "max_retries": 3, "timeout_s": 5, **kw}
    )


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


def test_a_422_answer_that_failed_response_format_never_trips_the_breaker():
    """Our own server answers 422 when a complete answer fails the requested schema: the endpoint works."""
    cfg = _cfg("", max_concurrency=1, circuit_breaker_failures=3)
    with FakeTeacher(lambda m, a: (422, None, "stop", {})) as fake:
        with open_teacher(cfg.model_copy(update={"base_url": fake.base_url})) as teacher:
            responses = teacher.complete([[{"role": "user", "content": f"q{i}"}] for i in range(6)], SamplingConfig())
    assert [r.error for r in responses] == ["invalid_output"] * 6 and len(fake.calls) == 6


def test_openai_backend_sends_the_key_from_the_named_env_var(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test-123")
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {})) as fake:
        with open_teacher(_cfg(fake.base_url, api_key_env="MY_TEACHER_KEY")) as teacher:
            teacher.complete([[{"role": "user", "content": "q"}]], SamplingConfig())
    assert fake.auth == ["Bearer sk-test-123"]


def test_openai_backend_trips_the_circuit_breaker_when_the_endpoint_is_down():
    cfg = _cfg("http://127.0.0.1:9/v1", max_concurrency=4, circuit_breaker_failures=6)  # nothing listens on 9
    with open_teacher(cfg) as teacher, pytest.raises(TeacherUnavailable, match=r"failed \d+ attempts in a row"):
        teacher.complete([[{"role": "user", "content": f"q{i}"}] for i in range(200)], SamplingConfig())


def test_openai_backend_breaker_stops_early_and_keeps_the_answers_that_landed():
    def script(messages, attempt):
        number = int(messages[-1]["content"][1:])
        return (200, label_json(), "stop", {}) if number < 5 else (503, None, "stop", {"Retry-After": "0"})

    landed = {}
    cfg = _cfg("", max_concurrency=1, circuit_breaker_failures=8)
    with FakeTeacher(script) as fake, open_teacher(cfg.model_copy(update={"base_url": fake.base_url})) as teacher:
        with pytest.raises(TeacherUnavailable):
            teacher.complete(
                [[{"role": "user", "content": f"q{i}"}] for i in range(100)],
                SamplingConfig(),
                on_response=lambda i, r: landed.setdefault(i, r),
            )
    answered = sorted(i for i, r in landed.items() if r.error is None)
    assert answered == [0, 1, 2, 3, 4]  # answered before the endpoint went down: handed over for the cache
    assert len(fake.calls) <= 5 + 8 + 1  # not 100 x 4 attempts


def test_openai_backend_keeps_max_concurrency_requests_in_flight():
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {}), delay_s=0.05) as fake:
        with open_teacher(_cfg(fake.base_url, max_concurrency=6)) as teacher:
            responses = teacher.complete([[{"role": "user", "content": f"q{i}"}] for i in range(60)], SamplingConfig())
    assert all(r.error is None for r in responses)
    assert fake.max_in_flight == 6


def test_token_bucket_spreads_work_over_the_configured_rate():
    async def spend() -> float:
        bucket = TokenBucket(per_minute=60_000)  # 1,000 a second, bursts of 10,000
        await bucket.take(10_000)  # the burst goes at once
        start = time.monotonic()
        for _ in range(10):
            await bucket.take(50)  # 500 more: about half a second
        return time.monotonic() - start

    assert 0.4 < asyncio.run(spend()) < 2.0


def test_requests_per_minute_limit_slows_the_client_down():
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {})) as fake:
        cfg = _cfg(fake.base_url, max_concurrency=8, max_requests_per_minute=600)  # 10/s, bursts of 100
        with open_teacher(cfg) as teacher:
            start = time.monotonic()
            teacher.complete([[{"role": "user", "content": f"q{i}"}] for i in range(110)], SamplingConfig())
            elapsed = time.monotonic() - start
    assert elapsed > 0.8  # the 10 requests over the burst wait about 1 s


def test_cache_stores_each_answer_as_it_lands_so_a_killed_run_loses_nothing(tmp_path):
    """Kill a process mid-run (SIGKILL), rerun: no prompt answered before the kill is asked again."""
    requests = [[{"role": "user", "content": f"q{i:03d}"}] for i in range(200)]
    with FakeTeacher(lambda m, a: (200, label_json(), "stop", {}), delay_s=0.02) as fake:
        cfg = _cfg(fake.base_url, max_concurrency=2)
        script = (
            "import sys, json; from pathlib import Path\n"
            "from slmops.config import OpenAITeacherConfig, SamplingConfig\n"
            "from slmops.teacher import open_teacher\n"
            "from slmops.teacher.cache import ResponseCache, complete_cached\n"
            "cfg = OpenAITeacherConfig.model_validate_json(sys.argv[1])\n"
            "requests = json.loads(sys.argv[2])\n"
            "with open_teacher(cfg) as t:\n"
            "    complete_cached(t, ResponseCache(Path(sys.argv[3])), 'h', requests, SamplingConfig())\n"
        )
        cache_path = tmp_path / "cache.sqlite"
        proc = subprocess.Popen(
            [sys.executable, "-c", script, cfg.model_dump_json(), json.dumps(requests), str(cache_path)], cwd=REPO
        )
        deadline = time.monotonic() + 60
        while _cached_rows(cache_path) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before_kill = set(fake.calls)
        saved = _cached_rows(cache_path)
        assert 20 <= saved < 200, saved
        fake.calls.clear()
        cache = ResponseCache(cache_path)
        with open_teacher(cfg) as teacher:
            responses, hits = complete_cached(teacher, cache, "h", requests, SamplingConfig())
        cache.close()
    assert hits == saved and len(responses) == 200
    assert len(fake.calls) == 200 - saved
    answered_before = {r[0]["content"] for r, resp in zip(requests, responses, strict=True) if resp.cached}
    assert answered_before <= before_kill and not answered_before & set(fake.calls)


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def rules_teacher(messages):
    """A callable teacher: a keyword rule engine standing in for an existing system."""
    text = messages[-1]["content"]
    if text.startswith("Write one new"):
        raise RuntimeError("this system cannot write inquiries")
    return label_json("shipping" if "配送" in text else "billing")


def test_callable_backend_answers_and_counts_its_failures():
    cfg = CallableTeacherConfig(target="tests.test_teacher:rules_teacher")
    with open_teacher(cfg) as teacher:
        ok, failed = teacher.complete(
            [task.build_teacher_messages("配送が遅いです"), task.build_augment_messages("billing", "x")],
            SamplingConfig(),
        )
    assert json.loads(ok.text)["category"] == "shipping"
    assert failed.error == "callable_error: RuntimeError" and failed.text is None


def test_transformers_backend_batches_like_it_generates_one_by_one(tiny_models):
    """Left-padded batches must give the same greedy answers as single prompts (a padding bug would not)."""
    prompts = [task.build_teacher_messages(t) for t in ["配送が遅い", "請求が二重です。至急確認してください", "a"]]
    sampling = SamplingConfig(max_tokens=12)
    cfg = TransformersTeacherConfig(model=str(tiny_models["model"]), batch_size=3)
    landed = []
    with open_teacher(cfg) as teacher:
        batched = teacher.complete(prompts, sampling, on_response=lambda i, r: landed.append(i))
        single = [teacher.complete([p], sampling)[0] for p in prompts]
    assert landed == [0, 1, 2]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in batched)
    assert teacher.teacher_id == f"transformers:{tiny_models['model']}"
