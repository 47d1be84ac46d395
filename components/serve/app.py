"""OpenAI-compatible server: ``/v1/chat/completions`` (also ``stream: true``), ``/v1/models``, ``/health``,
``/metrics`` (Prometheus), ``POST /admin/reload``.

Usage:
    slmops serve --alias prod --port 8000          # loads models:/<registered_model>@prod
    slmops serve --model-path models/student_onnx/int8

Bad requests get a 4xx with an OpenAI-style error body, never a 500: malformed JSON, wrong types, missing
fields (400), unknown model (404), ``max_tokens`` over the cap or prompt + ``max_tokens`` over the context
window (400), bodies over ``serve.max_body_bytes`` (413). More than ``serve.max_in_flight`` requests at once
get 429 with ``Retry-After``; a generation slower than ``serve.generation_timeout_s`` gets 504. If
``SLMOPS_API_KEYS`` is set (comma-separated), every route but ``/health`` needs ``Authorization: Bearer <key>``.

Greedy requests that wait while the model is busy are generated together (``batcher.py``, up to
``serve.max_batch_size``). Hybrid fallback (``serve.fallback``): a student answer that fails the task schema,
or whose confidence is under the threshold, is replaced by the teacher's (see ``fallback.py``); streamed
answers are sent as they are generated and are never replaced. Serving an alias, the server switches to a
new holder of that alias without a restart (``reload.py``): polled every ``serve.reload_interval_s`` or at
once on ``/admin/reload``.

Inference log (JSONL, one row per chat completion that was generated, appended and fsync'ed before the
answer is sent; ``slmops monitor`` reads the rows with status 200):
    id, ts (UTC ISO), model, model_version, status (200, or 504 for a timeout), stream (bool),
    served_by ("student" | "teacher"), fallback (null | "invalid_output" | "low_confidence"),
    input (the last user message, PII-masked), output (the answer sent, PII-masked), latency_ms,
    prompt_tokens, completion_tokens, finish_reason ("stop" | "length" | "time"),
    min_token_prob (the student's least certain token probability; only when the fallback computed it)
Requests refused before generating (4xx, 429) are counted in ``/metrics`` only.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from components import pii
from components.config import ServeConfig
from components.inference import ChatModel, Completion, ContextWindowExceeded
from components.serve.batcher import Batcher
from components.serve.fallback import Fallback
from components.serve.metrics import ServerMetrics
from components.serve.reload import ModelHolder, ReloadError, ReloadWatcher, ServedModel


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
    n: int = Field(1, ge=1, le=1)  # one choice per request: ask again for more
    stream: bool = False
    seed: int | None = None  # with temperature > 0: the same seed gives the same answer


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}}, headers=headers)


class InferenceLog:
    """Append-only JSONL. Rows are written whole under a lock (never interleaved) and, with ``fsync``, are on
    disk before ``append`` returns, so an answer the client received is never missing after a crash. The file
    is opened per row, so it can be rotated (moved away) while the server runs."""

    def __init__(self, path: Path, fsync: bool = True):
        self.path, self.fsync = path, fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())


class BodySizeLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before any of it is parsed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_big = _error(413, f"request body over {self.limit} bytes", "request_too_large")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:  # chunked uploads carry no length: read up to the limit, then replay to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. a streaming response waiting for the client to disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def create_app(
    model: ChatModel | ModelHolder,
    model_name: str,
    inference_log: Path | None,
    cfg: ServeConfig | None = None,
    model_version: str | None = None,
    fallback: Fallback | None = None,
) -> FastAPI:
    """An app serving ``model`` (a fixed model, or a ``ModelHolder`` that can switch to a new alias holder)."""
    cfg = cfg or ServeConfig()
    holder = model if isinstance(model, ModelHolder) else ModelHolder(ServedModel(model, model_version))

    metrics = ServerMetrics()
    batcher = Batcher(cfg.max_batch_size, on_batch=metrics.batch_size.observe).start()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        watcher = None
        if holder.can_reload and cfg.reload_interval_s is not None:
            watcher = ReloadWatcher(holder, cfg.reload_interval_s).start()
        yield
        if watcher is not None:
            watcher.stop()
        batcher.stop()

    app = FastAPI(title="slmops", description="OpenAI-compatible server for a distilled SLM", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, limit=cfg.max_body_bytes)
    log = InferenceLog(inference_log, fsync=cfg.log_fsync) if inference_log else None
    metrics.serving(holder.current.version)

    def reloaded(outcome: str, version: str | None) -> None:  # by /admin/reload or the poller
        metrics.reloaded(outcome)
        metrics.serving(version)

    holder.on_reload = reloaded
    slots = threading.BoundedSemaphore(cfg.max_in_flight)
    api_keys = {k.strip() for k in os.environ.get("SLMOPS_API_KEYS", "").split(",") if k.strip()}

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if api_keys and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            if header.removeprefix("Bearer ").strip() not in api_keys:
                metrics.error("unauthorized")
                return _error(401, "missing or invalid API key", "authentication_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        metrics.error("invalid_request")
        return _error(400, f"{where}: {first['msg']}" if where else first["msg"])

    @app.get("/health")
    def health() -> dict:
        served = holder.current
        return {
            "status": "ok",
            "model": model_name,
            "version": served.version,
            "backend": served.model.backend,
            "loaded_at": holder.loaded_at,
            "reload_error": holder.last_error,
            "fallback": fallback is not None,
        }

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "slmops"}]}

    @app.post("/admin/reload", response_model=None)
    def reload() -> dict | JSONResponse:
        """Switch to the alias's current holder now (the poller would within ``reload_interval_s``)."""
        try:
            return holder.reload()
        except ReloadError as err:
            return _error(409, str(err), "reload_error")

    def record(request_id: str, messages: list[dict], completion: Completion, latency_s: float, **fields) -> None:
        metrics.answered(completion, latency_s)
        if log is None:
            return
        user_text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        log.append(
            {
                "id": request_id,
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "model": model_name,
                "status": 200,
                "stream": False,
                "served_by": "student",
                "fallback": None,
                **fields,
                "input": pii.mask(user_text),
                "output": pii.mask(completion.text),
                "latency_ms": round(latency_s * 1000, 2),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "finish_reason": completion.finish_reason,
            }
        )

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(req: ChatRequest) -> dict | JSONResponse | StreamingResponse:
        if req.model != model_name:
            metrics.error("unknown_model")
            return _error(404, f"model {req.model!r} not found; this server serves {model_name!r}", "not_found_error")
        if req.max_tokens is not None and req.max_tokens > cfg.max_tokens_cap:
            metrics.error("invalid_request")
            return _error(400, f"max_tokens {req.max_tokens} exceeds this server's cap of {cfg.max_tokens_cap}")
        if not slots.acquire(blocking=False):
            metrics.error("overloaded")
            return _error(
                429, f"more than {cfg.max_in_flight} requests in flight", "rate_limit_error", {"Retry-After": "1"}
            )
        served = holder.current  # this request uses this model to the end, even if a reload swaps it meanwhile
        messages = [m.model_dump() for m in req.messages]
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        # Not given: as many tokens as the cap and the context window leave (OpenAI's default), at least 1, so
        # a prompt that fills the window still gets its 400 below.
        max_tokens = req.max_tokens or max(1, min(cfg.max_tokens_cap, served.model.room_for(messages)))
        headers = {"x-slmops-model-version": str(served.version)} if served.version is not None else {}
        if req.stream:
            try:
                pieces = served.model.chat_stream(
                    messages, max_tokens, req.temperature, req.top_p, cfg.generation_timeout_s, req.seed
                )
                first = next(pieces)  # raises ContextWindowExceeded before any byte is sent
            except ContextWindowExceeded as err:
                slots.release()
                metrics.error("context_window")
                return _error(400, str(err))

            def on_done(completion: Completion, latency_s: float) -> None:
                status = 504 if completion.finish_reason == "time" else 200
                record(request_id, messages, completion, latency_s, status=status, stream=True, **fields)

            fields = {"model_version": served.version}
            return StreamingResponse(
                _sse(request_id, model_name, first, pieces, slots, on_done),
                media_type="text/event-stream",
                headers=headers,
            )
        started = time.perf_counter()
        served_by, reason = "student", None
        try:
            scores = fallback is not None and fallback.needs_scores
            completion = batcher.generate(
                served.model,
                messages,
                max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                max_time=cfg.generation_timeout_s,
                scores=scores,
            )
            confidence = completion.min_token_prob  # the student's, kept when the teacher's answer replaces it
            if completion.finish_reason != "time" and fallback is not None:
                reason = fallback.reason(completion)
                if reason is not None:
                    metrics.fell_back(reason)
                    answer = fallback.answer(messages, req.max_tokens)
                    if answer is None:
                        metrics.error("fallback_failed")  # the student's answer is sent after all
                    else:
                        completion, served_by = answer, "teacher"
        except ContextWindowExceeded as err:
            metrics.error("context_window")
            return _error(400, str(err))
        finally:
            slots.release()
        fields = {"model_version": served.version, "served_by": served_by, "fallback": reason}
        if confidence is not None:
            fields["min_token_prob"] = round(confidence, 6)
        if completion.finish_reason == "time":
            record(request_id, messages, completion, time.perf_counter() - started, status=504, **fields)
            metrics.error("timeout")
            return _error(504, f"generation took longer than {cfg.generation_timeout_s} s", "timeout_error")
        record(request_id, messages, completion, time.perf_counter() - started, **fields)
        headers["x-slmops-served-by"] = served_by
        body = {
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
        return JSONResponse(body, headers=headers)

    return app


def _sse(request_id, model_name, first, pieces, slots, on_done) -> Iterator[str]:
    """Server-sent events in OpenAI's ``chat.completion.chunk`` format, ending with ``data: [DONE]``."""
    started = time.perf_counter()

    def chunk(delta: dict, finish_reason: str | None = None) -> str:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        for piece in _chain(first, pieces):
            if isinstance(piece, Completion):
                on_done(piece, time.perf_counter() - started)
                yield chunk({}, piece.finish_reason)
            else:
                yield chunk({"content": piece})
        yield "data: [DONE]\n\n"
    finally:
        slots.release()


def _chain(first, rest):
    yield first
    yield from rest


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
