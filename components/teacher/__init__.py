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
from pathlib import Path

from components.config import CallableTeacherConfig, OpenAITeacherConfig, TeacherConfig, TransformersTeacherConfig
from components.teacher.base import Teacher, TeacherResponse

__all__ = ["Teacher", "TeacherResponse", "open_teacher", "resolve_local"]


def resolve_local(cfg: TeacherConfig, root: Path) -> TeacherConfig:
    """``cfg`` with a relative ``serve_local`` folder made absolute under the work dir ``root``."""
    local = getattr(cfg, "serve_local", None)
    if local and not Path(local).is_absolute():
        return cfg.model_copy(update={"serve_local": str(root / local)})
    return cfg


@contextmanager
def open_teacher(cfg: OpenAITeacherConfig | CallableTeacherConfig | TransformersTeacherConfig) -> Iterator[Teacher]:
    if isinstance(cfg, OpenAITeacherConfig):
        from components.teacher.openai import OpenAITeacher

        if cfg.serve_local:  # offline demo: our own server on the demo teacher, for this block only
            if not Path(cfg.serve_local).is_dir():
                raise FileNotFoundError(
                    f"teacher serve_local folder {cfg.serve_local!r} does not exist: run the pipeline first "
                    "(it builds the demo teacher), or point the teacher at an endpoint"
                )
            from components.serve.app import BackgroundServer

            with BackgroundServer.for_model_dir(cfg.serve_local, model_name=cfg.model) as server:
                with OpenAITeacher(cfg.model_copy(update={"base_url": server.base_url})) as teacher:
                    yield teacher
            return
        with OpenAITeacher(cfg) as teacher:
            yield teacher
    elif isinstance(cfg, CallableTeacherConfig):
        from components.teacher.callable import CallableTeacher

        yield CallableTeacher(cfg)
    else:
        from components.teacher.local import TransformersTeacher

        yield TransformersTeacher(cfg)
