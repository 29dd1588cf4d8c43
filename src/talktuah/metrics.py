"""Prometheus metrics, each app with its own registry so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import __version__


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
            registry=self.registry,
        )
        self.models_local = Gauge(
            "talktuah_models_local", "Models in the models dir", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
