"""Teacher backends behind one interface: ``complete(messages_list, sampling) -> list[TeacherResponse]``.

Usage:
    with open_teacher(params.synthesize.teacher) as teacher:
        responses = teacher.complete([task.build_messages("注文が届きません")], SamplingConfig())

Backends (``kind`` in params): ``openai`` (any OpenAI-compatible endpoint over HTTP), ``transformers``
(a local model folder), ``callable`` (``module:function`` of an existing system).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slmops.config import CallableTeacherConfig, OpenAITeacherConfig, TransformersTeacherConfig
from slmops.teacher.base import Teacher, TeacherResponse

__all__ = ["Teacher", "TeacherResponse", "open_teacher"]


@contextmanager
def open_teacher(cfg: OpenAITeacherConfig | CallableTeacherConfig | TransformersTeacherConfig) -> Iterator[Teacher]:
    if isinstance(cfg, OpenAITeacherConfig):
        from slmops.teacher.openai import OpenAITeacher

        with OpenAITeacher(cfg) as teacher:
            yield teacher
    elif isinstance(cfg, CallableTeacherConfig):
        from slmops.teacher.callable import CallableTeacher

        yield CallableTeacher(cfg)
    else:
        from slmops.teacher.local import TransformersTeacher

        yield TransformersTeacher(cfg)
