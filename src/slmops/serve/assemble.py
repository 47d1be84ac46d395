"""What ``slmops serve`` builds from params: the model holder (a local folder, a registry alias that can be
reloaded, or an external OpenAI-compatible engine; each with its LoRA adapters) and the teacher fallback.

Usage:
    holder = model_holder(name, alias="prod", cfg=params.serve)     # or model_path=Path("models/..."); an
                                                                    # engine (serve.engine) and LoRA adapters from cfg
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


def model_holder(
    name: str,
    alias: str | None = None,
    model_path: Path | None = None,
    cfg: ServeConfig | None = None,
) -> ModelHolder:
    """What generates: ``cfg.engine`` when set (an external engine; no reload: the engine's model is its own),
    else a fixed local folder (``model_path``), else ``models:/<name>@<alias>`` with reload wired in. Each of
    ``cfg.lora_modules`` is served under its own name (peft adapters over our torch base, or passed to the engine).

    Raises ``ValueError`` when the alias does not resolve (the registry's message), the engine does not answer,
    or an adapter cannot be loaded."""
    lora = dict(cfg.lora_modules) if cfg is not None else {}
    if cfg is not None and cfg.engine is not None:
        from slmops.inference.engine_model import EngineChatModel

        return ModelHolder(ServedModel(EngineChatModel.open(cfg.engine, list(lora)), None))  # type: ignore[arg-type]
    from slmops.inference.lora import with_lora_modules

    if model_path is not None:
        from slmops.inference.chat_model import ChatModel

        return ModelHolder(ServedModel(with_lora_modules(ChatModel.load(model_path), lora), None))
    if alias is None:
        raise ValueError("give a registry alias or a model folder to serve")
    from slmops.registry import aliases as registry

    def load():
        model, version = registry.load_chat_model(name, alias)
        return with_lora_modules(model, lora), version

    return ModelHolder(ServedModel(*load()), loader=load, probe=lambda: registry.alias_version(name, alias))


def open_fallback(stack: ExitStack, cfg: ServeConfig, task: Task, pii_cfg: PIIConfig | None = None) -> Fallback | None:
    """The teacher fallback of ``cfg.fallback``, open until ``stack`` closes; None when no teacher is set.
    ``pii_cfg`` (``params.pii``) masks what the teacher is sent.

    Raises ``ImportError`` when a callable teacher's module cannot be imported."""
    if cfg.fallback.teacher is None:
        return None
    from slmops.teacher import open_teacher

    return Fallback(stack.enter_context(open_teacher(cfg.fallback.teacher)), cfg.fallback, task, pii_cfg)
