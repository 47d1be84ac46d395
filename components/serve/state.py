"""What every route of one server shares, kept typed on ``app.state.server``.

Usage:
    state: ServerState = request.app.state.server
    served = state.holder.current
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from components.config import ServeConfig
from components.serve.batcher import Batcher
from components.serve.fallback import Fallback
from components.serve.inference_log import InferenceLog
from components.serve.keys import KeyRing
from components.serve.metrics import ServerMetrics
from components.serve.reload import ModelHolder


@dataclass
class ServerState:
    holder: ModelHolder
    model_name: str
    cfg: ServeConfig
    metrics: ServerMetrics
    batcher: Batcher
    keys: KeyRing
    log: InferenceLog | None = None
    fallback: Fallback | None = None
    slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.cfg.max_in_flight)


def get_state(request: Request) -> ServerState:
    return request.app.state.server
