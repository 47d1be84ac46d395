"""Request models of the OpenAI-compatible API, and the error body every refusal uses.

Usage:
    req = ChatRequest.model_validate(body)     # pydantic errors become a 400 naming the field (app.py)
    refusal = req.unsupported()                # ("tools", "tools are not supported") or None

What is supported and what is refused (400 naming the field, the way vLLM's server refuses) is listed in
the README's server section. Unknown fields are refused too (``extra="forbid"``): a client that sends a field
this server does not know would otherwise believe it took effect.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Fields OpenAI defines that would change the answer and that this server cannot honour: 400 when present.
UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "audio",
    "prediction",
    "web_search_options",
    "reasoning_effort",
    "verbosity",
)


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, headers=None):
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(status_code=status, content=body, headers=headers)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)

    def as_dict(self) -> dict[str, str]:
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = None  # newer clients send it; there is nothing to obfuscate here


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema")
        return self


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # what current clients send; wins over max_tokens
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None  # with temperature > 0: the same seed gives the same answer
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    # Accepted and without effect on the answer.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # Refused when present (see ``UNSUPPORTED``); declared so the refusal can name them.
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: Any = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None

    @property
    def budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    def unsupported(self) -> tuple[str, str] | None:
        """The first field this server cannot honour, as (param, message); None when all can be."""
        for name in UNSUPPORTED:
            if getattr(self, name) is not None:
                return name, f"{name} is not supported by this server"
        checks = [
            ("n", self.n != 1, "n > 1 is not supported: ask again for more answers"),
            ("frequency_penalty", self.frequency_penalty != 0, "frequency_penalty is not supported"),
            ("presence_penalty", self.presence_penalty != 0, "presence_penalty is not supported"),
            ("logit_bias", bool(self.logit_bias), "logit_bias is not supported"),
            ("modalities", self.modalities not in (None, ["text"]), "only the text modality is supported"),
            ("stop", len(self.stops) > 4, "at most 4 stop sequences"),
            ("top_logprobs", self.top_logprobs is not None and not self.logprobs, "top_logprobs needs logprobs"),
            ("stream_options", self.stream_options is not None and not self.stream, "stream_options needs stream"),
            ("logprobs", self.logprobs and self.stream, "logprobs are not supported with stream"),
            (
                "response_format",
                self.stream and self.response_format is not None and self.response_format.type != "text",
                "response_format json_object/json_schema is not supported with stream (it is checked on the "
                "whole answer)",
            ),
        ]
        for param, failed, message in checks:
            if failed:
                return param, message
        for i, message in enumerate(self.messages):
            for j, part in enumerate(message.content if isinstance(message.content, list) else []):
                if part.type != "text":
                    return f"messages.{i}.content.{j}.type", f"content parts of type {part.type!r} are not supported"
        return None
