"""The OpenAI-compatible server over real HTTP: answers, logs every request, and turns bad input into 4xx."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from components.inference import ChatModel
from components.io import load_jsonl
from components.serve.app import BackgroundServer, create_app


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "inference.jsonl"
    app = create_app(ChatModel.load(tiny_models["int8"]), "tiny", log, max_tokens_cap=32)
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
    before = len(load_jsonl(server["log"]))
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
