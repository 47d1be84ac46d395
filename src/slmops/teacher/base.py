"""What every teacher backend returns, and the identity that keys its response cache."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel

from slmops.config import SamplingConfig


class TeacherResponse(BaseModel):
    text: str | None = None
    finish_reason: str | None = None  # "stop" | "length" | None when the call failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # transport failure after retries (timeout, 5xx, 4xx): never trained on
    cached: bool = False
    created_at: str | None = None  # when the teacher answered (UTC, stamped as it lands; a cached answer keeps it)


def request_seed(seed: int | None, messages: list[dict[str, str]]) -> int | None:
    """The sampling seed for one prompt: the configured seed mixed with the prompt, so reruns reproduce every
    answer while different prompts still sample differently."""
    if seed is None:
        return None
    return (seed + zlib.crc32(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode())) % 2**31


class TeacherUnavailable(RuntimeError):
    """The endpoint keeps failing (circuit breaker open): the stage stops; cached answers survive."""


# Called with (index into the request list, response) as each answer lands, before the whole list is done:
# the response cache stores it there, so a crash or a kill loses no answered (paid) request.
OnResponse = Callable[[int, TeacherResponse], None]


class Teacher(Protocol):
    teacher_id: str  # backend + model; part of provenance and of the cache key
    model_version: str

    def complete(
        self,
        requests: list[list[dict[str, str]]],
        sampling: SamplingConfig,
        response_format: dict | None = None,
        on_response: OnResponse | None = None,
    ) -> list[TeacherResponse]:
        """One response per request, in order; ``response_format`` is passed to backends that support it."""
        ...
