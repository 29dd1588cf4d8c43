"""Prometheus metrics. One registry per `Services`, so tests can build many of them.

Counters that happen (requests, bytes, tokens) are incremented where they happen; states
(jobs by status, engine state, current speed) are read from their owners at scrape time,
so they can never disagree with the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _StateCollector(Collector):
    """Gauges computed from live state on every scrape."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return self._read()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.info = Gauge(
            "talktuah_build_info", "TalkTuah version", ["version"], registry=self.registry
        )
        self.info.labels(version=__version__).set(1)
        self.requests = Counter(
            "talktuah_http_requests",
            "HTTP requests answered, by route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "talktuah_http_request_duration_seconds",
            "Time to answer (to the first byte of a streamed body)",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.download_bytes = Counter(
            "talktuah_download_bytes",
            "Bytes received from the Hub by download jobs",
            registry=self.registry,
        )
        self.proxy_requests = Counter(
            "talktuah_proxy_requests",
            "Requests forwarded to the engine, by endpoint, stream or not, and status",
            ["endpoint", "stream", "status"],
            registry=self.registry,
        )
        self.proxy_ttfb = Histogram(
            "talktuah_proxy_time_to_first_byte_seconds",
            "From forwarding a request to the engine's first response byte",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "talktuah_tokens",
            "Tokens the engine reported in `usage`, prompt and completion",
            ["kind"],
            registry=self.registry,
        )

        self.model_loads = Counter(
            "talktuah_model_loads",
            "Model loads started (on demand, by a switch or load-model, or a forced reload)",
            ["model"],
            registry=self.registry,
        )
        self.model_evictions = Counter(
            "talktuah_model_evictions",
            "Models unloaded to make room or after their keep-alive, by reason "
            "(max_loaded_models, memory_budget, idle)",
            ["model", "reason"],
            registry=self.registry,
        )
        self.load_wait = Histogram(
            "talktuah_model_load_wait_seconds",
            "How long a request waited for its model to load (or for room to load it)",
            ["model"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )

    def watch(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Add gauges that `read` computes from live state at scrape time."""
        self.registry.register(_StateCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)
