"""Locust load scenario for any OpenAI-compatible deployment of the model (``slmops serve``, or your own).

Usage (``pip install -e ".[load]"`` installs Locust):
    SLMOPS_LOAD_API_KEY=sk-... SLMOPS_LOAD_MODEL=ticket-triage-slm \\
        locust -f benchmarks/locustfile.py --host https://slm.example.internal --headless -u 16 -r 4 -t 2m
    locust -f benchmarks/locustfile.py --host http://127.0.0.1:8000        # web UI on http://localhost:8089

Environment:
    SLMOPS_LOAD_API_KEY   Bearer key (an ordinary API key; never an admin key). Unset: no Authorization header.
    SLMOPS_LOAD_MODEL     the model id to ask for (default: the first id ``GET /v1/models`` lists).
    SLMOPS_LOAD_DATA      a JSONL file of inquiries (``{"text": ...}`` per line; default
                          ``data/prepared/test.jsonl`` when it exists, else a few built-in ones).
    SLMOPS_LOAD_MAX_TOKENS  answer budget per request (default 96).
    SLMOPS_LOAD_STREAM_SHARE  share of requests sent with ``stream: true`` (default 0.2).
    SLMOPS_LOAD_WAIT_S    pause between one user's requests, in seconds (default 0).

Each simulated user sends the next inquiry as soon as its previous answer is back (no think time: this
measures capacity; set ``SLMOPS_LOAD_WAIT_S`` to pause that many seconds between a user's requests). A non-200, or a 200
with no answer text, is a failure; 429 (the server's in-flight cap) is reported as its own failure name so
it is easy to tell from errors. For streamed requests Locust's own ``chat (stream)`` entry times the response
headers; ``chat (stream) first chunk`` and ``chat (stream) whole answer`` time the first chunk and ``[DONE]``.
``benchmarks/serve_load.py`` is the in-repo benchmark that compares int8 ONNX with transformers on loopback;
this file is for your own deployment.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

from locust import HttpUser, constant, events, task

BUILT_IN = ["注文した商品がまだ届きません", "請求金額が二重になっています", "パスワードを再設定できません"]


def _inquiries() -> list[str]:
    path = Path(os.environ.get("SLMOPS_LOAD_DATA", "data/prepared/test.jsonl"))
    if not path.exists():
        return BUILT_IN
    texts = [json.loads(line).get("text", "") for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [t for t in texts if t] or BUILT_IN


INQUIRIES = itertools.cycle(_inquiries())
MAX_TOKENS = int(os.environ.get("SLMOPS_LOAD_MAX_TOKENS", "96"))
STREAM_SHARE = float(os.environ.get("SLMOPS_LOAD_STREAM_SHARE", "0.2"))


class ChatUser(HttpUser):
    model = os.environ.get("SLMOPS_LOAD_MODEL")
    wait_time = constant(float(os.environ.get("SLMOPS_LOAD_WAIT_S", "0")))

    def on_start(self) -> None:
        key = os.environ.get("SLMOPS_LOAD_API_KEY")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"
        if not ChatUser.model:
            with self.client.get("/v1/models", name="models", catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"GET /v1/models: HTTP {r.status_code}")
                    return
                ChatUser.model = r.json()["data"][0]["id"]

    def _body(self, stream: bool) -> dict:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": next(INQUIRIES)}],
            "max_tokens": MAX_TOKENS,
            "stream": stream,
        }

    @task(int(round((1 - STREAM_SHARE) * 100)) or 1)
    def chat(self) -> None:
        with self.client.post("/v1/chat/completions", json=self._body(False), name="chat", catch_response=True) as r:
            if r.status_code == 429:
                r.failure("429 over the in-flight cap")
            elif r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
            elif not r.json()["choices"][0]["message"]["content"]:
                r.failure("empty answer")

    @task(int(round(STREAM_SHARE * 100)) or 1)
    def chat_stream(self) -> None:
        started, first = time.perf_counter(), None
        with self.client.post(
            "/v1/chat/completions", json=self._body(True), name="chat (stream)", stream=True, catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
                return
            done = False
            for line in r.iter_lines():
                if first is None and line:
                    first = time.perf_counter() - started
                done = done or line == b"data: [DONE]"
            if not done:
                r.failure("stream ended without [DONE]")
                return
        whole = time.perf_counter() - started
        for name, seconds in (("chat (stream) first chunk", first), ("chat (stream) whole answer", whole)):
            events.request.fire(
                request_type="POST", name=name, response_time=seconds * 1000, response_length=0, exception=None
            )
