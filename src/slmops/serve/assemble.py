"""What ``slmops serve`` builds from params: the model holder (a local folder, or a registry alias that can
be reloaded) and the teacher fallback.

Usage:
    holder = model_holder(name, alias="prod")                       # or model_path=Path("models/...")
    with ExitStack() as stack:
        backstop = open_fallback(stack, cfg, task, params.pii)     # None when not configured
        app = create_app(holder, name, log_path, cfg, fallback=backstop, pii_cfg=params.pii)
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from slmops.config import PIIConfig, ServeConfig
from slmops.serve.fallback import Fallback
from slmops.serve.reload import ModelHolder, ServedModel
from slmops.tasks import Task


def model_holder(name: str, alias: str | None = None, model_path: Path | None = None) -> ModelHolder:
    """A fixed local folder (``model_path``), else ``models:/<name>@<alias>`` with reload wired in.

    Raises ``ValueError`` when the alias does not resolve (the registry's message)."""
    if model_path is not None:
        from slmops.inference.chat_model import ChatModel

        return ModelHolder(ServedModel(ChatModel.load(model_path), None))
    if alias is None:
        raise ValueError("give a registry alias or a model folder to serve")
    from slmops.registry import aliases as registry

    return ModelHolder(
        ServedModel(*registry.load_chat_model(name, alias)),
        loader=lambda: registry.load_chat_model(name, alias),
        probe=lambda: registry.alias_version(name, alias),
    )


def open_fallback(stack: ExitStack, cfg: ServeConfig, task: Task, pii_cfg: PIIConfig | None = None) -> Fallback | None:
    """The teacher fallback of ``cfg.fallback``, open until ``stack`` closes; None when no teacher is set.
    ``pii_cfg`` (``params.pii``) masks what the teacher is sent.

    Raises ``ImportError`` when a callable teacher's module cannot be imported."""
    if cfg.fallback.teacher is None:
        return None
    from slmops.teacher import open_teacher

    return Fallback(stack.enter_context(open_teacher(cfg.fallback.teacher)), cfg.fallback, task, pii_cfg)
