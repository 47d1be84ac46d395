"""Base classes of every params section: strict validation, and pass-through to a library's config class."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    # strict: "3" for an int is an error, not a silent 3. Params are validated in JSON mode (``_validate``), where
    # strings still become paths and lists tuples, as YAML cannot say otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def library_fields(target: str) -> set[str]:
    """The keyword names a library config class accepts, ``"module:Class"`` (dataclass fields or __init__)."""
    import dataclasses
    import importlib
    import inspect

    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()
    params = inspect.signature(cls.__init__).parameters.values()
    return fields | {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}


class PassThrough(BaseModel):
    """Declared fields (ours, with our defaults) plus any other key of the library class in ``TARGET``.

    An extra key is checked against that class's fields when params load (the library is imported only if
    there are extra keys), so a typo still fails at load naming the key. ``RESERVED`` maps library keys that
    must not be set directly to the field that sets them.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    TARGET: ClassVar[str]
    RESERVED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _known_extras(self) -> PassThrough:
        extra = self.model_extra or {}
        for key in extra:
            if key in self.RESERVED:
                raise ValueError(f"{key}: set {self.RESERVED[key]} instead")
        unknown = sorted(set(extra) - library_fields(self.TARGET)) if extra else []
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}: not a field of {self.TARGET.replace(':', '.')}")
        return self

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


SFT_MANAGED = "set by slmops (from the declared fields or the stage)"
