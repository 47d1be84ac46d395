"""OpenAI-compatible server: ``/v1/chat/completions`` (also ``stream: true``), ``/v1/models``, ``/health``,
``/metrics`` (Prometheus), ``POST /admin/reload``.

Usage:
    slmops serve --alias prod --port 8000          # loads models:/<registered_model>@prod
    slmops serve --model-path models/student_onnx/int8
    app = create_app(ChatModel.load(path), "tiny", inference_log=None)   # in Python

Where things are: ``routes/`` (one ``APIRouter`` per surface: chat, models, admin, health + metrics),
``schemas.py`` (request models, what is supported and what is refused), ``state.py`` (what the routes share,
on ``app.state.server``), ``keys.py`` (API and admin keys), ``inference_log.py``, ``body_limit.py``,
``continuous.py`` and ``batcher.py`` (continuous and dynamic batching), ``fallback.py`` (teacher backstop),
``reload.py`` (alias hot reload), ``assemble.py`` (what ``slmops serve`` builds from params).

Bad requests get a 4xx with an OpenAI-style error body (``message``, ``type``, ``param``), never a 500:
malformed JSON, wrong types, missing or unknown fields, unsupported features (400 naming the field), unknown
model (404), a budget over ``serve.max_tokens_cap`` or over the context window (400), bodies over
``serve.max_body_bytes`` (413). More than ``serve.max_in_flight`` requests at once get 429 with
``Retry-After``; a generation slower than ``serve.generation_timeout_s`` gets 504 (see ``routes/chat.py``).
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from slmops.config import PIIConfig, ServeConfig
from slmops.inference.chat_model import ChatModel
from slmops.serve.batcher import Batcher
from slmops.serve.body_limit import BodySizeLimit
from slmops.serve.continuous import ContinuousBatcher
from slmops.serve.fallback import Fallback
from slmops.serve.inference_log import InferenceLog
from slmops.serve.keys import KeyRing, check_keys
from slmops.serve.metrics import ServerMetrics
from slmops.serve.reload import ModelHolder, ReloadWatcher, ServedModel
from slmops.serve.routes import admin, chat, health, models
from slmops.serve.schemas import error
from slmops.serve.state import ServerState


def create_app(
    model: ChatModel | ModelHolder,
    model_name: str,
    inference_log: Path | None,
    cfg: ServeConfig | None = None,
    model_version: str | None = None,
    fallback: Fallback | None = None,
    keys: KeyRing | None = None,
    pii_cfg: PIIConfig | None = None,
) -> FastAPI:
    """An app serving ``model`` (a fixed model, or a ``ModelHolder`` that can switch to a new alias holder).

    ``keys``: the API and admin keys; by default read from ``SLMOPS_API_KEYS`` and ``SLMOPS_ADMIN_KEYS``.
    ``pii_cfg``: ``params.pii``, what the inference log masks (the fallback gets it from ``open_fallback``).
    """
    cfg = cfg or ServeConfig()
    holder = model if isinstance(model, ModelHolder) else ModelHolder(ServedModel(model, model_version))
    metrics = ServerMetrics()
    state = ServerState(
        holder=holder,
        model_name=model_name,
        cfg=cfg,
        metrics=metrics,
        batcher=(ContinuousBatcher if cfg.batching == "continuous" else Batcher)(
            cfg.max_batch_size, on_batch=metrics.batch_size.observe
        ),
        keys=keys if keys is not None else KeyRing.from_env(),
        log=InferenceLog(inference_log, fsync=cfg.log_fsync, pii_cfg=pii_cfg) if inference_log else None,
        fallback=fallback,
        pii_cfg=pii_cfg,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        watcher = None
        if holder.can_reload and cfg.reload_interval_s is not None:
            watcher = ReloadWatcher(holder, cfg.reload_interval_s).start()
        yield
        if watcher is not None:
            watcher.stop()
        state.batcher.stop()

    app = FastAPI(title="slmops", description="OpenAI-compatible server for a distilled SLM", lifespan=lifespan)
    app.state.server = state
    state.batcher.start()
    app.add_middleware(BodySizeLimit, limit=cfg.max_body_bytes)
    app.middleware("http")(check_keys)
    app.add_exception_handler(RequestValidationError, _bad_request)
    for router in (chat.router, models.router, admin.router, health.router):
        app.include_router(router)
    metrics.serving(holder.current.version)

    def reloaded(outcome: str, version: str | None) -> None:  # by /admin/reload or the poller
        metrics.reloaded(outcome)
        metrics.serving(version)

    holder.on_reload = reloaded
    return app


async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
    """Pydantic's complaint as a 400 naming the field (``messages.0.role: Input should be ...``)."""
    first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body")
    request.app.state.server.metrics.error("invalid_request")
    return error(400, f"{where}: {first['msg']}" if where else first["msg"], param=where or None)


def serve_in_background(model: ChatModel, model_name: str = "student") -> BackgroundServer:
    """The real server for ``model`` in a thread, no log: ``with serve_in_background(m) as s: s.base_url``."""
    return BackgroundServer(create_app(model, model_name, inference_log=None))


class BackgroundServer:
    """Run an app with uvicorn in a thread (tests, the demo teacher); ``with`` waits until it accepts."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        # log_config=None: uvicorn's dictConfig would flush (under the logging lock) every handler of this process,
        # Prefect's API log handler included, whose queue waits on a thread that needs that lock: a deadlock
        # seen in the parity stage of an embedded run (the flow's heartbeat thread, 2026-12-05).
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
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
