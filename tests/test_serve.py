"""The OpenAI-compatible server over real HTTP: answers, logs every request, and turns bad input into 4xx."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from slmops.config import ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.io import load_jsonl
from slmops.serve.app import BackgroundServer, create_app
from tests.conftest import REPO


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "inference.jsonl"
    cfg = ServeConfig(max_tokens_cap=32, max_body_bytes=16_384, max_in_flight=64)
    app = create_app(ChatModel.load(tiny_models["int8"]), "tiny", log, cfg)
    with BackgroundServer(app) as srv:
        yield {"url": f"http://127.0.0.1:{srv.port}", "log": log}


def _chat(content="注文が届きません。電話は090-1234-5678", **extra):
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8, **extra}


def test_health_and_models(server):
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"
    assert httpx.get(server["url"] + "/v1/models").json()["data"][0]["id"] == "tiny"


def test_chat_completion_answers_and_is_logged_with_pii_masked(server):
    before = len(load_jsonl(server["log"])) if server["log"].exists() else 0
    r = httpx.post(server["url"] + "/v1/chat/completions", json=_chat(), timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] <= 8
    rows = load_jsonl(server["log"])
    assert len(rows) == before + 1
    assert rows[-1]["input"] == "注文が届きません。電話は[PHONE]" and rows[-1]["id"] == body["id"]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (json.dumps({"model": "tiny"}).encode(), 400),  # messages missing
        (json.dumps({"model": "tiny", "messages": "hi"}).encode(), 400),  # wrong type
        (json.dumps({"model": "tiny", "messages": []}).encode(), 400),
        (json.dumps({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400),
        (json.dumps(_chat(max_tokens=10_000)).encode(), 400),  # over the cap
        (json.dumps(_chat(max_tokens=-1)).encode(), 400),
        (json.dumps(_chat(n=3)).encode(), 400),
        (json.dumps(_chat(content="長い" * 600)).encode(), 400),  # prompt + max_tokens over the context window
        (json.dumps({**_chat(), "model": "gpt-5"}).encode(), 404),
        (json.dumps(_chat(content="あ" * 5000)).encode(), 413),  # over max_body_bytes
        (json.dumps(_chat(content="長い" * 600, stream=True)).encode(), 400),  # streaming checks the window too
    ],
)
def test_bad_requests_get_4xx_with_an_error_body(server, payload, status):
    r = httpx.post(
        server["url"] + "/v1/chat/completions",
        content=payload,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]
    assert httpx.get(server["url"] + "/health").status_code == 200  # and the server is still up


def test_concurrent_requests_lose_no_log_rows(server):
    before = len(load_jsonl(server["log"])) if server["log"].exists() else 0  # run alone, nothing is logged yet
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda i: (
                    httpx.post(
                        server["url"] + "/v1/chat/completions", json=_chat(f"問い合わせ{i}"), timeout=60
                    ).status_code
                ),
                range(24),
            )
        )
    assert codes == [200] * 24
    assert len(load_jsonl(server["log"])) == before + 24


def test_api_keys_are_enforced_when_configured(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("SLMOPS_API_KEYS", "k1,k2")
    app = create_app(ChatModel.load(tiny_models["int8"]), "tiny", tmp_path / "log.jsonl")
    with BackgroundServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 200


def test_chunked_body_over_the_limit_gets_413(server):
    def chunks():
        for _ in range(10):
            yield b"x" * 2000  # no Content-Length: the server must count

    r = httpx.post(server["url"] + "/v1/chat/completions", content=chunks(), timeout=30)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


def test_streaming_sends_chunks_that_add_up_to_the_answer_and_is_logged(server):
    plain = httpx.post(server["url"] + "/v1/chat/completions", json=_chat("配送の件"), timeout=30).json()
    before = len(load_jsonl(server["log"]))
    with httpx.stream(
        "POST", server["url"] + "/v1/chat/completions", json=_chat("配送の件", stream=True), timeout=30
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]  # greedy: the same answer, streamed
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    rows = load_jsonl(server["log"])
    assert len(rows) == before + 1 and rows[-1]["id"] == chunks[0]["id"]


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def test_metrics_count_requests_tokens_and_errors(server):
    """The server is shared by this module's tests: what is asserted is what these two requests added."""
    before = _samples(server["url"])
    ok = httpx.post(server["url"] + "/v1/chat/completions", json=_chat(), timeout=30).json()
    httpx.post(server["url"] + "/v1/chat/completions", json={**_chat(), "model": "nope"}, timeout=30)
    after = _samples(server["url"])

    def added(prefix: str) -> float:
        return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))

    assert added("slmops_requests_total") == 1 and added("slmops_request_latency_seconds_count") == 1
    assert added('slmops_tokens_total{kind="completion"}') == ok["usage"]["completion_tokens"]
    assert added('slmops_tokens_total{kind="prompt"}') == ok["usage"]["prompt_tokens"]
    assert added('slmops_errors_total{kind="unknown_model"}') == 1
    assert not any(k.startswith("slmops_fallbacks_total") for k in after)  # the fallback is off here


def test_overload_gets_429_with_retry_after_and_every_answer_is_logged(tiny_models, tmp_path):
    log = tmp_path / "log.jsonl"
    app = create_app(ChatModel.load(tiny_models["model"]), "tiny", log, ServeConfig(max_in_flight=2))
    with BackgroundServer(app) as srv, ThreadPoolExecutor(12) as pool:
        url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
        responses = list(
            pool.map(lambda i: httpx.post(url, json=_chat(f"問い合わせ{i}", max_tokens=24), timeout=60), range(12))
        )
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 429}, codes
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)
    assert len(load_jsonl(log)) == codes.count(200)


def test_slow_generation_times_out_with_504(tiny_models, tmp_path):
    cfg = ServeConfig(generation_timeout_s=0.001, max_tokens_cap=64)
    app = create_app(ChatModel.load(tiny_models["model"]), "tiny", tmp_path / "log.jsonl", cfg)
    with BackgroundServer(app) as srv:
        url = f"http://127.0.0.1:{srv.port}"
        r = httpx.post(url + "/v1/chat/completions", json=_chat(max_tokens=64), timeout=60)
        assert r.status_code == 504 and "longer than" in r.json()["error"]["message"]
        assert httpx.get(url + "/health").status_code == 200


def test_a_seed_makes_sampled_answers_reproducible(server):
    def ask(seed):
        body = _chat("配送の件", temperature=1.0, max_tokens=16, seed=seed)
        return httpx.post(server["url"] + "/v1/chat/completions", json=body, timeout=30).json()

    first, again, other = ask(7), ask(7), ask(8)
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    assert first["choices"][0]["message"]["content"] != other["choices"][0]["message"]["content"]


def test_load_benchmark_loses_no_log_rows_through_the_real_cli_server(tiny_models):
    """``benchmarks/serve_load.py`` end to end on the tiny models: every answered request has its log row."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.serve_load",
            *("--int8", str(tiny_models["int8"]), "--transformers", str(tiny_models["model"])),
            *("--data", str(tiny_models["prepared"] / "test.jsonl")),
            *("--clients", "4", "--seconds", "2", "--rounds", "2", "--warmup", "2", "--max-tokens", "8"),
            *("--batch-sizes", "4"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("int8_onnx/batch4", "transformers/batch4"):
        result = figures[name]
        assert result["errors"] == 0 and result["ok"] > 4
        assert result["log_rows"] == result["ok"] == result["requests"]
    assert figures["ratio_int8"]["batch4"]["rps"] > 0
    assert figures["log_row"]["fsync_ms"] > 0 and figures["int8_batch_agreement"]["of"] > 0


class _Recording:
    """The served model, recording the budget each request was checked against (once a request, whether the
    continuous or the dynamic batcher generates it)."""

    def __init__(self, model: ChatModel):
        self.inner, self.budgets = model, []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def checked(self, messages, max_tokens):
        self.budgets.append(max_tokens)
        return self.inner.checked(messages, max_tokens)


def test_without_max_tokens_the_answer_gets_what_the_window_leaves(tiny_models, tmp_path):
    model = ChatModel.load(tiny_models["int8"])
    messages = [{"role": "user", "content": "配送の件"}]
    room = model.room_for(messages)
    for cap, expected in ((model.context_window, room), (7, 7)):  # the window's remainder, or the server's cap
        recording = _Recording(model)
        with BackgroundServer(create_app(recording, "tiny", None, ServeConfig(max_tokens_cap=cap))) as srv:
            url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
            r = httpx.post(url, json={"model": "tiny", "messages": messages}, timeout=60)
            assert r.status_code == 200, r.text
            usage = r.json()["usage"]
            assert recording.budgets == [expected] and usage["completion_tokens"] <= expected
            assert usage["total_tokens"] <= model.context_window and "x-slmops-model-version" not in r.headers
            full = {"model": "tiny", "messages": [{"role": "user", "content": "長い" * 600}]}
            assert httpx.post(url, json=full, timeout=60).status_code == 400  # no room left: still a clear 400
