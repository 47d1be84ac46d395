"""Prometheus metrics of one server: requests, latency, tokens, errors by kind, teacher fallbacks.

Usage:
    metrics = ServerMetrics()
    metrics.answered(completion, latency_s=0.031)
    text = metrics.render()      # what GET /metrics returns
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest

from slmops.inference.chat_model import Completion


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
        self.batch_size = Histogram(
            "slmops_batch_size",
            "Requests started together: one generate call (dynamic batching), one prefill joining a batch (continuous)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.tokens = Counter("slmops_tokens", "Tokens processed", ["kind"], registry=self.registry)
        self.errors = Counter("slmops_errors", "Requests refused or failed, by kind", ["kind"], registry=self.registry)
        # Student answers that did not pass and went to the teacher (hybrid fallback), by reason. The fallback
        # rate is slmops_fallbacks_total / slmops_requests_total; errors{kind="fallback_failed"} counts the
        # ones the teacher could not answer either (the student's answer was sent).
        self.fallbacks = Counter(
            "slmops_fallbacks", "Requests sent to the teacher fallback, by reason", ["reason"], registry=self.registry
        )
        self.reloads = Counter(
            "slmops_reloads", "Switches to a new alias holder, by outcome", ["outcome"], registry=self.registry
        )
        self.model = Info("slmops_model", "The registry version being served", registry=self.registry)

    def answered(self, completion: Completion, latency_s: float) -> None:
        self.requests.labels(completion.finish_reason).inc()
        self.latency.observe(latency_s)
        self.tokens.labels("prompt").inc(completion.prompt_tokens)
        self.tokens.labels("completion").inc(completion.completion_tokens)

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def fell_back(self, reason: str) -> None:
        self.fallbacks.labels(reason).inc()

    def reloaded(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()

    def serving(self, version: str | None) -> None:
        self.model.info({"version": str(version)})

    def render(self) -> bytes:
        return generate_latest(self.registry)
