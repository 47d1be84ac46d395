"""A teacher that is a Python function ``module:function(messages: list[dict]) -> str``.

Usage (params): ``synthesize.teacher: {kind: callable, target: "my_rules.engine:label"}``

If the function has a ``version`` attribute (a zero-argument callable returning a string, e.g. a hash of the
rules it applies), it is appended to ``model``: the model version in provenance and in the response-cache key
then changes whenever the rules do, so a changed rule set is never answered from a stale cache.
"""

from __future__ import annotations

import importlib

from slmops.config import CallableTeacherConfig, SamplingConfig
from slmops.teacher.base import OnResponse, TeacherResponse


class CallableTeacher:
    def __init__(self, cfg: CallableTeacherConfig):
        module, _, name = cfg.target.partition(":")
        if not name:
            raise ValueError(f"teacher.target must look like 'module:function', got {cfg.target!r}")
        self.fn = getattr(importlib.import_module(module), name)
        self.teacher_id = f"callable:{cfg.target}"
        version = getattr(self.fn, "version", None)
        self.model_version = f"{cfg.model}+{version()}" if callable(version) else cfg.model

    def complete(
        self,
        requests: list[list[dict[str, str]]],
        sampling: SamplingConfig,
        response_format: dict | None = None,
        on_response: OnResponse | None = None,
    ) -> list[TeacherResponse]:
        out = []
        for index, messages in enumerate(requests):
            try:
                response = TeacherResponse(text=str(self.fn(messages)), finish_reason="stop")
            except Exception as err:  # an existing system may fail in any way; count it, never crash the stage
                response = TeacherResponse(error=f"callable_error: {type(err).__name__}")
            if on_response is not None:
                on_response(index, response)
            out.append(response)
        return out
