"""The metrics and the tracer of one process, built once from the settings by app/wiring.py.

The API and the worker both get theirs here, so a job run by a worker is metered and traced like one
run by an API process. The API serves the metrics at /metrics; a worker has no HTTP server, so its
metric objects exist (the same code paths run) but are not scraped.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer

from app.config import Settings
from app.ops.metrics import MeteredTransport, Metrics, ServiceCollector, download_observer
from app.ops.tracing import build_provider


class Telemetry:
    def __init__(self, metrics: Metrics, provider: TracerProvider | None) -> None:
        self.metrics = metrics
        self.provider = provider
        self.tracer: Tracer | None = provider.get_tracer("app") if provider is not None else None
        self._collector: ServiceCollector | None = None

    @classmethod
    def from_settings(cls, settings: Settings, exporter: SpanExporter | None = None) -> Telemetry:
        """Tracing only with OTEL_EXPORTER_OTLP_ENDPOINT (or an explicit exporter)."""
        return cls(Metrics(), build_provider(settings, exporter))

    def meter(self, transport: httpx.AsyncBaseTransport, api_base_url: str) -> httpx.AsyncBaseTransport:
        """The upstream transport, timed and counted per call."""
        return MeteredTransport(transport, self.metrics, api_base_url)

    def observe_downloads(self, api_base_url: str) -> Callable[[str, str, str, float], None]:
        """Image downloads bypass the httpx transport (app/core/upstream/transport.py): they report here instead."""
        return download_observer(self.metrics, api_base_url)

    def watch(self, collector: ServiceCollector) -> None:
        """Report the running services' counters at scrape time (until `unwatch`)."""
        self.metrics.registry.register(collector)
        self._collector = collector

    def unwatch(self) -> None:
        if self._collector is not None:
            self.metrics.registry.unregister(self._collector)
            self._collector = None

    async def render(self) -> bytes:
        """The exposition text, with the job counts read fresh."""
        if self._collector is not None:
            await self._collector.refresh()
        return self.metrics.render()

    def shutdown(self) -> None:
        """Flush the spans still queued."""
        if self.provider is not None:
            self.provider.shutdown()
