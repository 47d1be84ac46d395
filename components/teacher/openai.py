"""OpenAI-compatible teacher over HTTP: bounded concurrency, retries with backoff + jitter, Retry-After.

Retries 429, 5xx, timeouts and connection errors (up to ``max_retries``); never retries other 4xx, which
mean the request itself is wrong. The API key is read from the environment variable named in params.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from tqdm.auto import tqdm

from components.config import OpenAITeacherConfig, SamplingConfig
from components.teacher.base import TeacherResponse

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAITeacher:
    def __init__(self, cfg: OpenAITeacherConfig):
        self.cfg = cfg
        self.teacher_id = f"openai:{cfg.base_url}:{cfg.model}"
        self.model_version = cfg.model
        headers = {}
        if cfg.api_key_env and os.environ.get(cfg.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"
        self._client = httpx.Client(base_url=cfg.base_url.rstrip("/"), headers=headers, timeout=cfg.timeout_s)

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return min(0.5 * 2**attempt, 30.0) * (0.5 + random.random())  # exponential with jitter

    def complete_one(
        self, messages: list[dict[str, str]], sampling: SamplingConfig, response_format: dict | None = None
    ) -> TeacherResponse:
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if response_format is not None:
            body["response_format"] = response_format
        error = "no attempt"
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                response = self._client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                error = f"transport: {type(err).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        data = response.json()
                        choice = data["choices"][0]
                        usage = data.get("usage") or {}
                        return TeacherResponse(
                            text=choice["message"]["content"],
                            finish_reason=choice.get("finish_reason"),
                            prompt_tokens=usage.get("prompt_tokens", 0),
                            completion_tokens=usage.get("completion_tokens", 0),
                        )
                    except (ValueError, KeyError, IndexError, TypeError):
                        return TeacherResponse(error="malformed_response")
                error = f"http_{response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    return TeacherResponse(error=error)  # the request is wrong: retrying will not help
                retry_after = response.headers.get("Retry-After")
            if attempt < self.cfg.max_retries:
                time.sleep(self._backoff(attempt, retry_after))
        return TeacherResponse(error=error)

    def complete(
        self, requests: list[list[dict[str, str]]], sampling: SamplingConfig, response_format: dict | None = None
    ) -> list[TeacherResponse]:
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            futures = [pool.submit(self.complete_one, messages, sampling, response_format) for messages in requests]
            return [
                f.result() for f in tqdm(futures, desc="teacher", unit="req", leave=False, disable=len(futures) < 2)
            ]
