"""What every teacher backend returns, and the identity that keys its response cache."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from components.config import SamplingConfig


class TeacherResponse(BaseModel):
    text: str | None = None
    finish_reason: str | None = None  # "stop" | "length" | None when the call failed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # transport failure after retries (timeout, 5xx, 4xx): never trained on
    cached: bool = False


class Teacher(Protocol):
    teacher_id: str  # backend + model; part of provenance and of the cache key
    model_version: str

    def complete(
        self, requests: list[list[dict[str, str]]], sampling: SamplingConfig, response_format: dict | None = None
    ) -> list[TeacherResponse]:
        """One response per request, in order; ``response_format`` is passed to backends that support it."""
        ...
