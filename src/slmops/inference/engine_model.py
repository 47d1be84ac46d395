"""The chat interface of ``ChatModel`` over an external OpenAI-compatible engine (llama.cpp's server, vLLM, ...).

Usage:
    model = EngineChatModel.open(EngineConfig(base_url="http://127.0.0.1:8080/v1"), lora_names=["billing"])
    completion = model.chat([{"role": "user", "content": "..."}], max_tokens=64)
    model.adapters["billing"].chat(...)            # sent as model "billing": the engine serves that adapter

The slmops front keeps auth, limits, PII masking, the inference log, the teacher fallback and metrics; this
forwards generation. Sent: the messages (as the front masked them), max_tokens, temperature, top_p, seed,
stop, logprobs/top_logprobs (also asked for when the fallback needs the answer's confidence). Read back: the
text, finish_reason, usage, and logprobs where the engine gives them. A stream without usage (llama.cpp's
Python server sends none) counts one completion token per content chunk and 0 prompt tokens.

The engine batches concurrent requests itself, so a batch from the front's batcher goes out as concurrent
requests. An engine's 4xx is answered with the same status and message (``EngineError``); an unreachable or
failing engine with 502; an answer slower than ``max_time`` is cut (``timed_out``: the front answers 504).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from slmops.config import EngineConfig
from slmops.inference.completion import Completion, EngineError

log = logging.getLogger(__name__)
UNKNOWN_WINDOW = 1 << 31  # no context window given: the engine alone refuses what does not fit


class EngineChatModel:
    backend = "engine"

    def __init__(self, client: httpx.Client, engine_model: str, cfg: EngineConfig):
        self.client, self.engine_model, self.cfg = client, engine_model, cfg
        self.path = cfg.base_url
        self.context_window = cfg.context_window or UNKNOWN_WINDOW
        self.adapters: dict[str, EngineChatModel] = {}

    @classmethod
    def open(cls, cfg: EngineConfig, lora_names: list[str] | tuple[str, ...] = ()) -> EngineChatModel:
        """A client of the engine at ``cfg.base_url``; ``lora_names`` are served by the engine under those names.

        Raises ``ValueError`` when the engine does not answer ``GET /models`` or its key variable is unset."""
        headers = {}
        if cfg.api_key_env is not None:
            if not os.environ.get(cfg.api_key_env):
                raise ValueError(f"serve.engine.api_key_env: the environment variable {cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"
        client = httpx.Client(base_url=cfg.base_url, headers=headers, timeout=_timeout(cfg, None))
        try:
            listed = [m["id"] for m in client.get("models").raise_for_status().json()["data"]]
        except (httpx.HTTPError, KeyError, ValueError) as err:
            client.close()
            raise ValueError(f"serve.engine: no model list from {cfg.base_url}/models ({err})") from None
        if not listed and cfg.model is None:
            raise ValueError(f"serve.engine: {cfg.base_url}/models lists no model; set serve.engine.model")
        model = cls(client, cfg.model or listed[0], cfg)
        for name in [n for n in lora_names if n not in listed]:
            log.warning("the engine does not list %r; requests for it are passed on all the same", name)
        model.adapters = {name: model.serving(name) for name in lora_names}
        return model

    def serving(self, engine_model: str) -> EngineChatModel:
        """This client, sending ``engine_model`` as the model (a LoRA adapter the engine serves)."""
        view = copy.copy(self)
        view.engine_model, view.adapters = engine_model, {}
        return view

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return []  # the engine tokenizes; its usage says how many tokens the prompt was

    def room_for(self, messages: list[dict[str, str]]) -> int:
        return self.context_window

    def checked(self, messages: list[dict[str, str]], max_tokens: int) -> list[int]:
        return []

    def chat(self, messages: list[dict[str, str]], max_tokens: int, *args, **kwargs) -> Completion:
        return self.chat_batch([messages], max_tokens, *args, **kwargs)[0]

    def chat_batch(
        self,
        conversations: list[list[dict[str, str]]],
        max_tokens: int | list[int],
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_time: float | None = None,
        scores: bool = False,
        stop: list[str] | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """One request per conversation, sent at once; ``ChatModel.chat_batch``'s arguments and results."""
        limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
        asked = logprobs if logprobs is not None else (0 if scores else None)

        def one(messages: list[dict[str, str]], limit: int) -> Completion:
            body = self.body(messages, limit, temperature, top_p, seed, stop, asked)
            return self._answer(body, max_time, scores, keep_logprobs=logprobs is not None)

        if len(conversations) == 1:
            return [one(conversations[0], limits[0])]
        with ThreadPoolExecutor(len(conversations)) as pool:
            return list(pool.map(one, conversations, limits))

    def body(self, messages, max_tokens, temperature, top_p, seed, stop, logprobs, stream=False) -> dict:
        """The OpenAI request the engine gets."""
        body = {
            "model": self.engine_model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": stream,
        }
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = stop
        if logprobs is not None:
            body |= {"logprobs": True, "top_logprobs": logprobs}
        if stream:  # engines that do not know it ignore it (then the chunks are counted)
            body["stream_options"] = {"include_usage": True}
        return body

    def _answer(self, body: dict, max_time: float | None, scores: bool, keep_logprobs: bool) -> Completion:
        try:
            response = self.client.post("chat/completions", json=body, timeout=_timeout(self.cfg, max_time))
        except httpx.ReadTimeout:
            return Completion(text="", prompt_tokens=0, completion_tokens=0, finish_reason="length", timed_out=True)
        except httpx.HTTPError as err:
            raise EngineError(f"the engine at {self.cfg.base_url} failed: {err}") from None
        raise_for(response)
        data = response.json()
        choice, usage = data["choices"][0], data.get("usage") or {}
        completion = Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason") or "stop",
        )
        content = (choice.get("logprobs") or {}).get("content") or []
        if keep_logprobs:
            completion.logprobs = content
        if scores and content:
            values = [max(float(entry["logprob"]), -9999.0) for entry in content]
            completion.min_token_prob = math.exp(min(values))
            completion.mean_token_prob = math.exp(sum(values) / len(values))
        return completion

    def chat_stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_time: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str | Completion]:
        """The engine's stream, piece by piece, then its ``Completion``. Raises ``EngineError`` at the first
        ``next`` when the engine refuses the request (before the front has sent a byte)."""
        body = self.body(messages, max_tokens, temperature, top_p, seed, stop, None, stream=True)
        deadline = None if max_time is None else time.monotonic() + max_time
        text, chunks, finish, usage, timed_out = [], 0, "length", {}, False
        try:
            with self.client.stream("POST", "chat/completions", json=body, timeout=_timeout(self.cfg, max_time)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise_for(r)
                for chunk in _events(r):
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            text.append(piece)
                            chunks += 1
                            yield piece
                    if deadline is not None and time.monotonic() > deadline:
                        timed_out = True
                        break
        except httpx.ReadTimeout:
            timed_out = True
        except httpx.HTTPError as err:
            raise EngineError(f"the engine at {self.cfg.base_url} failed: {err}") from None
        yield Completion(
            text="".join(text),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", chunks),
            finish_reason="length" if timed_out else finish,
            timed_out=timed_out,
        )


def _events(response: httpx.Response) -> Iterator[dict]:
    """The JSON bodies of a server-sent event stream, up to ``data: [DONE]``."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def raise_for(response: httpx.Response) -> None:
    """``EngineError`` for an engine's error answer: its 4xx passed on with its message, anything else 502."""
    if response.status_code < 400:
        return
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    err = payload.get("error") if isinstance(payload, dict) else None
    message = (err.get("message") if isinstance(err, dict) else None) or response.text[:500]
    param = err.get("param") if isinstance(err, dict) else None
    status = response.status_code if 400 <= response.status_code < 500 else 502
    raise EngineError(f"the engine answered {response.status_code}: {message}", status, param)


def _timeout(cfg: EngineConfig, max_time: float | None) -> httpx.Timeout:
    return httpx.Timeout(max_time, connect=cfg.connect_timeout_s)
