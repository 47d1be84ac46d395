"""Prometheus metrics of one server: requests, latency, tokens, errors by kind, teacher fallbacks.

Usage:
    metrics = ServerMetrics()
    metrics.answered(completion, latency_s=0.031)
    text = metrics.render()      # what GET /metrics returns
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from components.inference import Completion


class ServerMetrics:
    """One registry per app, so two servers in one process (tests, the demo teacher) never share counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "slmops_requests", "Chat completions answered, by finish reason", ["finish_reason"], registry=self.registry
        )
        self.latency = Histogram(
            "slmops_request_latency_seconds",
            "Time to answer a chat completion",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.tokens = Counter("slmops_tokens", "Tokens processed", ["kind"], registry=self.registry)
        self.errors = Counter("slmops_errors", "Requests refused or failed, by kind", ["kind"], registry=self.registry)
        # Answers the teacher gave because the student's did not pass (hybrid fallback; 0 until it is enabled).
        self.fallbacks = Counter(
            "slmops_fallbacks", "Requests answered by the teacher fallback", registry=self.registry
        )

    def answered(self, completion: Completion, latency_s: float) -> None:
        self.requests.labels(completion.finish_reason).inc()
        self.latency.observe(latency_s)
        self.tokens.labels("prompt").inc(completion.prompt_tokens)
        self.tokens.labels("completion").inc(completion.completion_tokens)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
