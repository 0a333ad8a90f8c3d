"""OpenTelemetry traces, only when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP/protobuf).

Three kinds of span, by design not one per streamed chunk:
- the request (`RequestTracing`, pure ASGI, SERVER kind): opened when the request arrives, closed
  when the last byte of the response is sent, named after the route template; it continues a
  caller's `traceparent`;
- the order fetch and each image download (`TracedAutoenhanceClient`): one span per logical call,
  retries and redirects inside it, with the image id, bytes and outcome as attributes.

The provider belongs to the app (not the process-global one), so several apps in one process (the
tests) do not share exporters; it is flushed and shut down with the app.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core.delivery.sets import Rendition
from app.core.models import OrderInfo
from app.core.spool import Spool
from app.core.upstream.client import AutoenhanceClient, ImageDownloadFailed
from app.ops.metrics import route_label

SERVICE_NAME = "autoenhance-batch"


def traces_endpoint(base: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to its /v1/traces (OTLP spec)."""
    return base.rstrip("/") + "/v1/traces"


def build_provider(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP in a background thread; None when tracing is not configured."""
    if exporter is None:
        if not settings.otel_exporter_otlp_endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings.otel_exporter_otlp_endpoint), timeout=10)
    from app.version import __version__

    attributes = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):  # the standard variable wins over our default name
        attributes["service.name"] = SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class RequestTracing:
    """Pure ASGI: one SERVER span per HTTP request, covering the whole streamed response."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        span = self.tracer.start_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        )
        status = 500
        first_byte_seen = False

        async def traced_send(message: Message) -> None:
            nonlocal status, first_byte_seen
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not first_byte_seen and message.get("body"):
                first_byte_seen = True
                span.add_event("first body byte")
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True, set_status_on_exception=True):
                await self.app(scope, receive, traced_send)
        finally:
            route = route_label(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()


class TracedAutoenhanceClient(AutoenhanceClient):
    """The upstream client with a span around the order fetch and around each image download."""

    def __init__(self, *, tracer: Tracer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tracer = tracer

    async def get_order(self, order_id: str, sort: str | None = None) -> OrderInfo:
        with self._tracer.start_as_current_span(
            "autoenhance order fetch", kind=SpanKind.CLIENT, attributes={"autoenhance.order_id": order_id}
        ) as span:
            order = await super().get_order(order_id, sort)
            span.set_attribute("autoenhance.images", len(order.images))
            return order

    async def download_enhanced(self, image_id: str, options: Rendition, spool: Spool) -> None:
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            "autoenhance image download",
            kind=SpanKind.CLIENT,
            attributes={
                "autoenhance.image_id": image_id,
                "autoenhance.format": options.format.value if options.format else "original",
                "autoenhance.set": options.set,
                "autoenhance.preview": options.preview,
                "autoenhance.dev_mode": options.dev_mode,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await super().download_enhanced(image_id, options, spool)
            except ImageDownloadFailed as exc:  # an expected outcome (reported in the ZIP), not a crash
                span.set_status(Status(StatusCode.ERROR, exc.reason))
                span.set_attribute("autoenhance.failure", exc.reason)
                raise
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("autoenhance.bytes", spool.size)
            span.set_attribute("autoenhance.seconds", round(time.perf_counter() - started, 4))
