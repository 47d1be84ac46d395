"""What every route of one server shares, kept typed on ``app.state.server``.

Usage:
    state: ServerState = request.app.state.server
    served = state.pick(req.model)         # the base, or a LoRA adapter's view (serve.lora_modules)
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
from slmops.serve.reload import ModelHolder, ServedModel


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

    def served_names(self) -> list[str]:
        """The model names a request may ask for: the base's, then each LoRA adapter's (``serve.lora_modules``)."""
        return [self.model_name, *getattr(self.holder.current.model, "adapters", {})]

    def pick(self, name: str) -> ServedModel:
        """What answers a request for ``name`` (one of ``served_names``): the base or that adapter's view."""
        served = self.holder.current  # taken once: the request uses this model to the end, even over a reload
        if name == self.model_name:
            return served
        return ServedModel(served.model.adapters[name], served.version)


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
