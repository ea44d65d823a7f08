"""Prometheus metrics of one server (its own registry, so several apps in one process do not clash).

Exposed at ``GET /metrics`` in the text format::

    openvino_llm_requests_total{route, status}        requests answered, by route and HTTP status
    openvino_llm_errors_total{route, type}            error answers, by route and error type
    openvino_llm_requests_active                      requests in progress
    openvino_llm_requests_queued                      requests accepted and waiting for their first token
    openvino_llm_time_to_first_token_seconds          histogram
    openvino_llm_time_per_output_token_seconds        histogram (decoding time / tokens after the first)
    openvino_llm_request_duration_seconds{route}      histogram
    openvino_llm_prompt_tokens_total                  tokens in
    openvino_llm_generation_tokens_total              tokens out
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServerMetrics:
    """The counters, gauges and histograms of one app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "openvino_llm_requests", "Requests answered, by route and HTTP status.", ["route", "status"], registry=r
        )
        self.errors = Counter("openvino_llm_errors", "Error answers, by route and type.", ["route", "type"], registry=r)
        self.active = Gauge("openvino_llm_requests_active", "Requests in progress.", registry=r)
        self.queued = Gauge(
            "openvino_llm_requests_queued", "Generation requests waiting for their first token.", registry=r
        )
        self.ttft = Histogram(
            "openvino_llm_time_to_first_token_seconds", "Time to first token.", buckets=_TTFT_BUCKETS, registry=r
        )
        self.tpot = Histogram(
            "openvino_llm_time_per_output_token_seconds",
            "Mean time per output token after the first.",
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "openvino_llm_request_duration_seconds",
            "Request duration, by route.",
            ["route"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("openvino_llm_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter("openvino_llm_generation_tokens", "Tokens generated.", registry=r)

    def observe_generation(self, input_tokens: int, output_tokens: int, ttft_ms: float, tpot_ms: float) -> None:
        """Record one finished generation's token counts and timing."""
        self.prompt_tokens.inc(input_tokens)
        self.generation_tokens.inc(output_tokens)
        if output_tokens > 0:
            self.ttft.observe(ttft_ms / 1000)
        if output_tokens > 1:
            self.tpot.observe(tpot_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["ServerMetrics"]
