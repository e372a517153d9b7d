"""Prometheus metrics of one serving app (its own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("llm_requests", "Requests by endpoint and HTTP status", ["endpoint", "status"], registry=r)
        self.tokens = Counter("llm_tokens", "Tokens processed", ["kind"], registry=r)  # prompt | completion
        self.latency = Histogram("llm_request_latency_seconds", "Time to the full answer", ["endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.first_token = Histogram("llm_time_to_first_token_seconds", "Streaming: time to the first content", buckets=LATENCY_BUCKETS,
                                     registry=r)
        self.refusals = Counter("llm_refusals", "Requests refused by a safety filter", ["stage", "category"], registry=r)
        self.filter_hits = Counter("llm_filter_hits", "Output spans redacted, by PII type", ["filter"], registry=r)
        self.errors = Counter("llm_errors", "Failures by kind", ["kind"], registry=r)
        self.fallbacks = Counter("llm_fallbacks", "Answers not given by the current version", ["reason", "served_by"], registry=r)
        self.rate_limited = Counter("llm_rate_limited", "Requests answered 429", ["limit"], registry=r)
        self.in_flight = Gauge("llm_in_flight_requests", "Requests being answered", registry=r)
        self.queue_depth = Gauge("llm_queue_depth", "Requests waiting for the current model", registry=r)
        self.batch_size = Histogram("llm_batch_size", "Requests generated together", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.model_info = Gauge("llm_model_version_info", "1 for the version being served", ["version"], registry=r)
        self.switches = Counter("llm_model_switches", "Version changes picked up from the registry", registry=r)


def sample_sum(metrics_text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` in a /metrics page whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith((name + "{", name + " ")):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
    return total
