"""OpenAI-compatible server: ``/v1/chat/completions``, ``/v1/models``, ``/health``.

Usage:
    slmops serve --alias prod --port 8000          # loads models:/<registered_model>@prod
    slmops serve --model-path models/student_onnx/int8

Every request and response is appended to the inference log (JSONL, PII masked) that ``slmops monitor``
reads. Bad requests get a 4xx with an OpenAI-style error body, never a 500. If ``SLMOPS_API_KEYS`` is set
(comma-separated), every route but ``/health`` needs ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from components import pii
from components.inference import ChatModel, ContextWindowExceeded


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send many optional fields we do not use
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


class InferenceLog:
    """Append-only JSONL; one row per answered request, written under a lock so rows never interleave."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


def create_app(
    model: ChatModel,
    model_name: str,
    inference_log: Path | None,
    max_tokens_cap: int = 256,
    model_version: str | None = None,
) -> FastAPI:
    app = FastAPI(title="slmops", description="OpenAI-compatible server for a distilled SLM")
    log = InferenceLog(inference_log) if inference_log else None
    api_keys = {k.strip() for k in os.environ.get("SLMOPS_API_KEYS", "").split(",") if k.strip()}

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_keys and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            if header.removeprefix("Bearer ").strip() not in api_keys:
                return _error(401, "missing or invalid API key", "authentication_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return _error(400, f"{where}: {first['msg']}" if where else first["msg"])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model_name, "version": model_version, "backend": model.backend}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "slmops"}]}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(req: ChatRequest) -> dict | JSONResponse:
        if req.model != model_name:
            return _error(404, f"model {req.model!r} not found; this server serves {model_name!r}", "not_found_error")
        if req.stream:
            return _error(400, "stream=true is not supported yet")
        max_tokens = req.max_tokens or max_tokens_cap
        if max_tokens > max_tokens_cap:
            return _error(400, f"max_tokens {max_tokens} exceeds this server's cap of {max_tokens_cap}")
        messages = [m.model_dump() for m in req.messages]
        started = time.perf_counter()
        try:
            completion = model.chat(messages, max_tokens, req.temperature, req.top_p)
        except ContextWindowExceeded as err:
            return _error(400, str(err))
        latency_ms = (time.perf_counter() - started) * 1000
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if log is not None:
            user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            log.append(
                {
                    "id": request_id,
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "model": model_name,
                    "model_version": model_version,
                    "input": pii.mask(user_text),
                    "output": pii.mask(completion.text),
                    "latency_ms": round(latency_ms, 2),
                    "prompt_tokens": completion.prompt_tokens,
                    "completion_tokens": completion.completion_tokens,
                    "finish_reason": completion.finish_reason,
                }
            )
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
        }

    return app


class BackgroundServer:
    """Run an app with uvicorn in a thread (tests, the demo teacher); ``with`` waits until it accepts."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    @classmethod
    def for_model_dir(cls, model_dir: str | Path, model_name: str, port: int = 0) -> BackgroundServer:
        return cls(create_app(ChatModel.load(model_dir), model_name, inference_log=None), port=port)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
