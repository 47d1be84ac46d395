"""Adapter: any teacher backend as a single-request ``chat`` model, so evaluation treats it like the student."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slmops.config import SamplingConfig
from slmops.inference.chat_model import Completion
from slmops.teacher import Teacher, open_teacher


class TeacherChat:
    def __init__(self, teacher: Teacher):
        self.teacher = teacher

    @classmethod
    @contextmanager
    def open(cls, cfg) -> Iterator[TeacherChat]:
        with open_teacher(cfg) as teacher:
            yield cls(teacher)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Completion:
        response = self.teacher.complete([messages], SamplingConfig(max_tokens=max_tokens))[0]
        return Completion(
            text=response.text or "",
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            finish_reason=response.finish_reason or "error",
        )
