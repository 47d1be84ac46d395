"""What every route of one server shares, kept typed on ``app.state.server``.

Usage:
    state: ServerState = request.app.state.server
    served = state.holder.current
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from slmops.config import PIIConfig, ServeConfig
from slmops.serve.batcher import Batcher
from slmops.serve.continuous import ContinuousBatcher
from slmops.serve.fallback import Fallback
from slmops.serve.inference_log import InferenceLog
from slmops.serve.keys import KeyRing
from slmops.serve.metrics import ServerMetrics
from slmops.serve.reload import ModelHolder


@dataclass
class ServerState:
    holder: ModelHolder
    model_name: str
    cfg: ServeConfig
    metrics: ServerMetrics
    batcher: Batcher | ContinuousBatcher
    keys: KeyRing
    log: InferenceLog | None = None
    fallback: Fallback | None = None
    pii_cfg: PIIConfig | None = None  # params.pii: the inference log and (serve.mask_inputs) the model's input
    slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.cfg.max_in_flight)


def as_trained(messages: list[dict], state: ServerState) -> list[dict]:
    """User messages as the student was trained on them (NFKC + PII masked) when ``serve.mask_inputs``."""
    if not state.cfg.mask_inputs:
        return messages
    from slmops.text import pii

    return [
        m | {"content": pii.mask(m["content"], cfg=state.pii_cfg, ner=False)} if m["role"] == "user" else m
        for m in messages
    ]


def get_state(request: Request) -> ServerState:
    return request.app.state.server
