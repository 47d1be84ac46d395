"""OpenAI-compatible teacher over HTTP: async, bounded concurrency, rate limits, retries, circuit breaker.

Usage:
    teacher = OpenAITeacher(OpenAITeacherConfig(base_url="http://127.0.0.1:8000/v1", model="qwen2.5-72b"))
    responses = teacher.complete([task.build_teacher_messages("注文が届きません")], SamplingConfig())

- At most ``max_concurrency`` requests in flight, on one ``httpx.AsyncClient``.
- Client-side limits ``max_requests_per_minute`` and ``max_tokens_per_minute`` (token buckets), so a paid
  endpoint's quota is respected before it has to answer 429.
- 429, 5xx, timeouts and connection errors are retried (``max_retries``) with exponential backoff and
  jitter, honouring ``Retry-After``. Other 4xx are never retried: the request itself is wrong.
- Circuit breaker: after ``circuit_breaker_failures`` failed attempts in a row the call raises
  ``TeacherUnavailable`` instead of working through the queue against a dead endpoint. Every answer that
  arrived before that was handed to ``on_response`` (the response cache), so a rerun resumes.
The API key is read from the environment variable named in params and sent only as a header.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

import httpx

from slmops.config import OpenAITeacherConfig, SamplingConfig
from slmops.teacher.base import OnResponse, TeacherResponse, TeacherUnavailable, request_seed

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
T = TypeVar("T")


class EventLoopThread:
    """An asyncio loop on a daemon thread: sync callers submit coroutines to it and wait for the result.

    One loop for the teacher's lifetime lets one ``httpx.AsyncClient`` (and its open connections) serve every
    call, and works the same whether or not the caller itself runs inside an event loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="teacher-client", daemon=True)
        self.thread.start()

    def run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class TokenBucket:
    """``per_minute`` units per minute on average, in bursts of at most ten seconds' worth."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()  # waiters queue in order

    async def take(self, amount: float) -> None:
        need = min(amount, self.capacity)  # a request bigger than a burst waits for a full bucket, then goes
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


class CircuitBreaker:
    def __init__(self, threshold: int):
        self.threshold = threshold
        self.failures_in_row = 0
        self.last_error: str | None = None

    def record(self, error: str | None) -> None:
        if error is None:
            self.failures_in_row = 0
        else:
            self.failures_in_row += 1
            self.last_error = error

    @property
    def is_open(self) -> bool:
        return self.failures_in_row >= self.threshold


class OpenAITeacher:
    def __init__(self, cfg: OpenAITeacherConfig):
        self.cfg = cfg
        self.teacher_id = f"openai:{cfg.base_url}:{cfg.model}"
        self.model_version = cfg.model
        self._headers = {}
        if cfg.api_key_env and os.environ.get(cfg.api_key_env):
            self._headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"

        self._loop: EventLoopThread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()  # the server's fallback calls ``complete`` from many threads

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> EventLoopThread:
        with self._start_lock:
            if self._loop is None:
                loop = EventLoopThread()
                limits = httpx.Limits(max_connections=self.cfg.max_concurrency)

                async def make_client() -> httpx.AsyncClient:
                    return httpx.AsyncClient(
                        base_url=self.cfg.base_url.rstrip("/"),
                        headers=self._headers,
                        timeout=self.cfg.timeout_s,
                        limits=limits,
                    )

                self._client = loop.run(make_client())
                self._loop = loop
            return self._loop

    def close(self) -> None:
        if self._loop is not None and self._client is not None:
            self._loop.run(self._client.aclose())
            self._loop.close()
        self._loop = self._client = None

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        return min(0.5 * 2**attempt, 30.0) * (0.5 + random.random())  # exponential with jitter

    def complete(
        self,
        requests: list[list[dict[str, str]]],
        sampling: SamplingConfig,
        response_format: dict | None = None,
        on_response: OnResponse | None = None,
    ) -> list[TeacherResponse]:
        """One response per request, in order. Raises ``TeacherUnavailable`` when the breaker opens."""
        loop = self._start()
        return loop.run(self._complete_all(requests, sampling, response_format, on_response))

    async def _complete_all(self, requests, sampling, response_format, on_response) -> list[TeacherResponse]:
        cfg = self.cfg
        limit = asyncio.Semaphore(cfg.max_concurrency)
        per_request = TokenBucket(cfg.max_requests_per_minute) if cfg.max_requests_per_minute else None
        per_token = TokenBucket(cfg.max_tokens_per_minute) if cfg.max_tokens_per_minute else None
        breaker = CircuitBreaker(cfg.circuit_breaker_failures)
        client = self._client  # one client for the teacher's lifetime (see _start)

        async def one(index: int, messages: list[dict[str, str]]) -> TeacherResponse:
            async with limit:
                body = {
                    "model": cfg.model,
                    "messages": messages,
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "max_tokens": sampling.max_tokens,
                }
                if sampling.seed is not None:
                    body["seed"] = request_seed(sampling.seed, messages)
                if response_format is not None:
                    body["response_format"] = response_format
                # Upper bound: ~1 token per character (Japanese) plus the whole completion budget.
                tokens = sum(len(m["content"]) for m in messages) + sampling.max_tokens
                response = await self._with_retries(client, body, tokens, breaker, per_request, per_token)
            if on_response is not None:
                on_response(index, response)
            return response

        tasks = [asyncio.create_task(one(i, m)) for i, m in enumerate(requests)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _with_retries(self, client, body, tokens, breaker, per_request, per_token) -> TeacherResponse:
        error = "no attempt"
        for attempt in range(self.cfg.max_retries + 1):
            if breaker.is_open:
                raise TeacherUnavailable(
                    f"teacher endpoint {self.cfg.base_url} failed {breaker.failures_in_row} attempts in a row "
                    f"(last: {breaker.last_error}); stopped instead of working through the queue. Answers "
                    "received so far are cached: rerun the stage once the endpoint is back."
                )
            if per_request is not None:
                await per_request.take(1)
            if per_token is not None:
                await per_token.take(tokens)
            retry_after = None
            try:
                response = await client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                error = f"transport: {type(err).__name__}"
            else:
                if response.status_code == 200:
                    breaker.record(None)
                    return _parse(response)
                error = f"http_{response.status_code}"
                if response.status_code == 422:  # the endpoint works; this answer failed response_format
                    breaker.record(None)
                    return TeacherResponse(error="invalid_output")
                if response.status_code not in RETRYABLE_STATUS:
                    breaker.record(error)  # a key or URL that is wrong fails every request: let it trip
                    return TeacherResponse(error=error)  # the request is wrong: retrying will not help
                retry_after = response.headers.get("Retry-After")
            breaker.record(error)
            if attempt < self.cfg.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        return TeacherResponse(error=error)


def _parse(response: httpx.Response) -> TeacherResponse:
    try:
        data = response.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return TeacherResponse(
            text=choice["message"]["content"],
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
        )
    except (ValueError, KeyError, IndexError, TypeError):
        return TeacherResponse(error="malformed_response")
