"""Prometheus metrics: a pure ASGI request meter, an upstream meter, a service collector (served at
`/metrics` by app/api/routes/metrics.py).

Why these pieces:
- `RequestMetrics` is pure ASGI (never BaseHTTPMiddleware) so a streamed ZIP is not buffered or
  slowed; it times the first body byte separately from the end of the stream, because for this
  service "how long until bytes flow" and "how long the whole archive took" are different questions.
- `MeteredTransport` wraps the upstream httpx transport, so every call to Autoenhance (retries and
  redirects to the asset host included) is timed and counted by outcome without touching the engine.
- `ServiceCollector` reads the counters the service already keeps (`Stats`, the cache, the download
  budget, the job store) at scrape time instead of duplicating them on the hot path.

Each app has its own registry (tests build many apps in one process; a global one would collide).
Labels are bounded: routes are templates (`/v1/orders/{order_id}/images`), never raw paths.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.archives.cache import ArchiveCache
from app.core.engine import Engine
from app.core.stats import Stats

PREFIX = "autoenhance_batch"
# Seconds: from a cache hit or an error (milliseconds) to a large order streamed for minutes.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
UNMATCHED = "<unmatched>"
JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled")


class Metrics:
    """The metric objects of one app, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template and status",
            labels,
            registry=self.registry,
        )
        self.first_byte = Histogram(
            f"{PREFIX}_http_time_to_first_byte_seconds",
            "From request received to the first response body byte sent (a streamed ZIP's wait for its first image)",
            labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "From request received to the last body byte sent (the whole stream)",
            labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.upstream = Histogram(
            f"{PREFIX}_upstream_request_duration_seconds",
            "Calls to Autoenhance (each attempt and redirect), until response headers; outcome is the HTTP status "
            "or timeout / connection_error / cancelled",
            ("method", "endpoint", "outcome"),
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


# -- requests -------------------------------------------------------------------------------------


def route_label(scope: Scope) -> str:
    """The matched route's template, with the prefix it was included under (`/v1`); a fixed label
    when nothing matched. FastAPI hands over the router's own route object, whose template lacks the
    include prefix, so the prefix is recovered as the literal path segments in front of the match."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return UNMATCHED
    regex = getattr(route, "path_regex", None)
    path = str(scope.get("path", ""))
    if regex is not None and not regex.match(path):
        parts = path.split("/")
        for start in range(2, len(parts)):
            if regex.match("/" + "/".join(parts[start:])):
                return "/".join(parts[:start]) + str(template)
    return str(template)


class RequestMetrics:
    """Pure ASGI: counts every HTTP request and times its first body byte and its last."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response
        first_byte: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
            elif (
                message["type"] == "http.response.body"
                and first_byte is None
                and (message.get("body") or not message.get("more_body", False))
            ):
                first_byte = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            ended = time.perf_counter()
            labels = (scope["method"], route_label(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.duration.labels(*labels).observe(ended - started)
            if first_byte is not None:
                self.metrics.first_byte.labels(*labels).observe(first_byte - started)


# -- upstream -------------------------------------------------------------------------------------

_ID_SEGMENT = re.compile(r"/(orders|images|brackets)/[^/]+")


def upstream_endpoint(url: httpx.URL, api_host: str) -> str:
    """A bounded label: the v3 path with ids replaced, or `asset` for anything else (signed asset URLs)."""
    return endpoint_label(url.host, url.path, api_host)


def endpoint_label(host: str, path: str, api_host: str) -> str:
    if host != api_host or not path.lstrip("/").startswith("v3/"):
        return "asset"
    return _ID_SEGMENT.sub(r"/\1/{id}", "/" + path.lstrip("/"))


def download_observer(metrics: Metrics, api_base_url: str) -> Callable[[str, str, str, float], None]:
    """The same histogram for image downloads, which go through app/core/upstream/http1.py, not httpx."""
    api_host = httpx.URL(api_base_url).host

    def observe(method: str, url: str, outcome: str, seconds: float) -> None:
        parts = urlsplit(url)  # twice per image: the stdlib's split, a tenth of httpx.URL's parse
        metrics.upstream.labels(method, endpoint_label(parts.hostname or "", parts.path, api_host), outcome).observe(seconds)

    return observe


class MeteredTransport(httpx.AsyncBaseTransport):
    """Wraps the upstream transport: latency to response headers and outcome of every call."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics, api_base_url: str) -> None:
        self.inner = inner
        self.metrics = metrics
        self.api_host = httpx.URL(api_base_url).host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            response = await self.inner.handle_async_request(request)
            outcome = str(response.status_code)
            return response
        except httpx.TimeoutException:
            outcome = "timeout"
            raise
        except httpx.TransportError:
            outcome = "connection_error"
            raise
        finally:
            endpoint = upstream_endpoint(request.url, self.api_host)
            self.metrics.upstream.labels(request.method, endpoint, outcome).observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the service's own counters, read at scrape time -------------------------------------------------


class ServiceCollector(Collector):
    """Images, bytes, cache, download budget and jobs, read from the running services at scrape time."""

    def __init__(
        self,
        stats: Stats,
        cache: ArchiveCache,
        engine: Engine,
        count_jobs: Callable[[], Awaitable[dict[str, int]]],
    ) -> None:
        self.stats = stats
        self.cache = cache
        self.engine = engine
        self._count_jobs = count_jobs
        self.job_counts: dict[str, int] = {}

    async def refresh(self) -> None:
        """Job records by status come from the job store (an async query), so they are read before
        the synchronous `collect`."""
        self.job_counts = await self._count_jobs()

    def collect(self) -> Iterator[Any]:
        stats, cache, limiter = self.stats, self.cache, self.engine.limiter
        counters = {
            "orders_fetched": ("Orders fetched for a batch or a job", stats.orders_processed),
            "images_downloaded": ("Images downloaded from Autoenhance into an archive", stats.images_downloaded),
            "images_failed": ("Images that could not be downloaded (listed in the report)", stats.images_failed),
            "images_waited_on_disk": (
                "Images of a stream that waited for their reader on disk, not in memory",
                stats.images_waited_on_disk,
            ),
            "zips_served": ("Archives sent in full (streamed, cached or job)", stats.zips_served),
            "partial_zips": ("Archives sent with at least one image missing", stats.partial_zips),
            "bytes_sent": ("Archive bytes sent to callers", stats.bytes_sent),
            "cache_hits": ("Archive cache hits", cache.hits),
            "cache_misses": ("Archive cache misses", cache.misses),
        }
        for name, (documentation, value) in counters.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
        gauges = {
            "downloads_in_flight": ("Image downloads holding a budget slot now", limiter.in_use),
            "downloads_waiting": ("Image downloads waiting for a budget slot", limiter.waiting),
            "download_budget": ("Current process-wide download budget (slots)", limiter.capacity),
            "active_batches": ("Orders being turned into archives now", self.engine.active_batches),
            "cache_bytes": ("Bytes held by the archive cache", cache.size_bytes()),
            "spool_memory_bytes": ("Image bytes held in memory by spools now", self.engine.spool_memory.held),
        }
        for name, (documentation, value) in gauges.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Job records by status (finished ones until purged)", labels=["status"]
        )
        for status in JOB_STATUSES:
            jobs.add_metric([status], self.job_counts.get(status, 0))
        yield jobs
