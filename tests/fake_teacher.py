"""A scripted OpenAI-compatible endpoint on loopback, for testing teacher clients over real HTTP.

Also used by ``benchmarks/teacher.py``: ``delay_s`` makes every answer take that long and ``capacity``
bounds how many requests the server works on at once (the rest queue), like a real inference server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from slmops.serve.app import BackgroundServer

# script(messages, attempt) -> (status, content or None, finish_reason, headers)
Script = Callable[[list[dict], int], tuple[int, str | None, str, dict]]


def completion(content: str, finish_reason: str = "stop") -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FakeTeacher:
    def __init__(self, script: Script, delay_s: float = 0.0, capacity: int | None = None):
        self.script = script
        self.calls: list[str] = []  # the user message of every request that reached the server
        self.bodies: list[dict] = []  # and the whole request body
        self.auth: list[str | None] = []  # the Authorization header of every request
        self.in_flight = 0
        self.max_in_flight = 0  # most requests the server saw at once
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        app = FastAPI()
        slots = asyncio.Semaphore(capacity) if capacity else None  # created here, used on the server's loop

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            user = body["messages"][-1]["content"]
            with self._lock:
                self.calls.append(user)
                self.bodies.append(body)
                self.auth.append(request.headers.get("authorization"))
                attempt = self._attempts.get(user, 0)
                self._attempts[user] = attempt + 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if slots is not None:
                    async with slots:
                        await asyncio.sleep(delay_s)
                elif delay_s:
                    await asyncio.sleep(delay_s)
            finally:
                with self._lock:
                    self.in_flight -= 1
            status, content, finish, headers = self.script(body["messages"], attempt)
            if status != 200:
                return JSONResponse({"error": {"message": "scripted"}}, status_code=status, headers=headers)
            if content is None:
                return PlainTextResponse("<html>not json</html>")
            return JSONResponse(completion(content, finish))

        self.server = BackgroundServer(app)

    def __enter__(self) -> FakeTeacher:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    @property
    def base_url(self) -> str:
        return self.server.base_url


def label_json(category: str = "billing", priority: str = "high", reply: str = "確認いたします。") -> str:
    return json.dumps({"category": category, "priority": priority, "reply": reply}, ensure_ascii=False)
