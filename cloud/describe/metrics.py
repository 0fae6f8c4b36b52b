"""Prometheus metrics of the describer, on the service's registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from cloud.describe.base import Usage


class DescriberMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "semcom_describer_tokens",
            "LLM tokens used, by kind (prompt, completion).",
            ["kind"],
            registry=registry,
        )
        self.requests = Counter(
            "semcom_describer_requests",
            "LLM requests by outcome (ok, timeout, connection, http_<status>, malformed, "
            "invalid, truncated, refused).",
            ["outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "semcom_describer_request_seconds",
            "Duration of one LLM request (s).",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
            registry=registry,
        )
        self.jobs = Counter(
            "semcom_describer_jobs",
            "Describer jobs by outcome (done, retry, failed) and describer (rules, llm).",
            ["outcome", "describer"],
            registry=registry,
        )
        self.enqueued = Counter(
            "semcom_describer_enqueued",
            "Describer jobs enqueued, by reason (window, new_class, stopped_vehicle).",
            ["reason"],
            registry=registry,
        )

    def add_usage(self, usage: Usage) -> None:
        self.tokens.labels("prompt").inc(usage.prompt_tokens)
        self.tokens.labels("completion").inc(usage.completion_tokens)
