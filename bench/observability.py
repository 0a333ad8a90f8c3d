"""Cost of the pure ASGI request meter and request tracing, per request and per streamed chunk.

    .venv/bin/python -m bench.observability

In-process (no sockets): a trivial ASGI app sends 1 or 1000 body messages, bare and wrapped. What
matters for this service is the per-chunk cost, since a ZIP streams in 1 MiB chunks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.ops.metrics import Metrics, RequestMetrics
from app.ops.tracing import RequestTracing


def streaming_app(chunks: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(chunks - 1):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"x"})

    return app


async def per_request_us(app: Any, requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(_: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        await app({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    tracer = provider.get_tracer("bench")
    for chunks, requests in ((1, 20_000), (1000, 200)):
        app = streaming_app(chunks)
        bare = asyncio.run(per_request_us(app, requests))
        metered = asyncio.run(per_request_us(RequestMetrics(app, Metrics()), requests)) - bare
        traced = asyncio.run(per_request_us(RequestTracing(app, tracer), requests)) - bare
        print(
            f"{chunks:>5} chunk(s): bare {bare:7.1f} us/request | metrics +{metered:6.1f} us "
            f"({metered / chunks:.2f} us/chunk) | tracing +{traced:6.1f} us ({traced / chunks:.2f} us/chunk)"
        )


if __name__ == "__main__":
    main()
