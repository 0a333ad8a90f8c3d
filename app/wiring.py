"""Every service of a process, built once by `Services.start` for the API (app/main.py) and the worker
(app/worker.py) alike, so both run the same engine, archive policy, jobs and webhooks, metered and
traced the same way.

Construction order is the dependency order, and nothing is assigned from outside afterwards:
upstream client -> engine -> archive policy -> webhooks facade -> job manager (told of finished jobs
through the facade, as its `JobListener`) -> order watcher (which starts jobs: it needs the manager).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from app.archives.cache import ArchiveCache
from app.archives.flights import Flights
from app.archives.layout_store import LayoutStore
from app.archives.numbering import Numbering
from app.archives.service import Archives
from app.config import Settings
from app.core import owner
from app.core.budget.local import FairLimiter
from app.core.budget.shared import SharedBudget
from app.core.engine import Engine, EngineLimits
from app.core.network.proxies import EnvProxyTransport
from app.core.stats import Stats
from app.core.upstream.breaker import UpstreamGuard
from app.core.upstream.client import AutoenhanceClient
from app.core.upstream.factory import build_client
from app.jobs.manager import JobManager
from app.ops.metrics import ServiceCollector
from app.ops.telemetry import Telemetry
from app.webhooks.service import Webhooks
from app.webhooks.watcher import OrderWatcher

if TYPE_CHECKING:
    from simulator import SimulatorState

log = logging.getLogger("app.wiring")

DEMO_BASE_URL = "http://simulator.demo"


@dataclass(frozen=True)
class Services:
    settings: Settings
    telemetry: Telemetry
    http: httpx.AsyncClient
    client: AutoenhanceClient
    engine: Engine
    stats: Stats
    archives: Archives
    """The one "find or make this archive" policy (local cache, single-flight, shared cache, counters)."""
    webhooks: Webhooks
    jobs: JobManager
    watcher: OrderWatcher
    simulator: SimulatorState | None = None
    """Demo mode: the embedded Autoenhance simulator's state."""

    @classmethod
    async def start(cls, settings: Settings, telemetry: Telemetry, *, consume: bool | None = None) -> Services:
        """Build and start everything. `consume`: run jobs from the shared queue (None: JOB_WORKERS_IN_API)."""
        for directory in (settings.data_dir, settings.cache_dir, settings.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        clear_dead_spools(settings.spool_dir)
        settings.spool_dir.mkdir(parents=True, exist_ok=True)

        async with contextlib.AsyncExitStack() as opened:  # a failed start closes what it opened, in reverse
            simulator_state, http, client, limiter = _upstream(settings, telemetry)
            opened.push_async_callback(http.aclose)
            opened.push_async_callback(client.aclose)
            stats = Stats()
            redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
            shared_budget = None
            if redis_url is not None and settings.shared_budget:  # N instances, one upstream budget
                shared_budget = SharedBudget.from_url(redis_url, settings.redis_key_prefix, settings.max_global_downloads)
                opened.push_async_callback(shared_budget.aclose)
            limits = EngineLimits(
                per_order=settings.max_concurrent_downloads,
                max_images=settings.max_images_per_order,
                spool_dir=settings.spool_dir,
                spool_memory_bytes=settings.spool_memory_bytes,
                max_image_bytes=settings.max_image_bytes,
                request_memory_bytes=settings.spool_request_memory_bytes,
                ahead_bytes=settings.spool_ahead_bytes,
            )
            engine = Engine(client, limiter, limits, stats, shared_budget)
            archives = _archives(settings, engine, stats, redis_url)
            opened.push_async_callback(archives.aclose)

            webhooks = await Webhooks.start(settings)
            opened.push_async_callback(webhooks.aclose)
            jobs = await JobManager.start(settings, archives, client, stats, listener=webhooks, consume=consume)
            opened.push_async_callback(jobs.aclose)
            watcher = OrderWatcher.start(webhooks, jobs, client)
            telemetry.watch(ServiceCollector(stats, archives.cache, engine, jobs.store.count_by_status))
            opened.pop_all()
        return cls(settings, telemetry, http, client, engine, stats, archives, webhooks, jobs, watcher, simulator_state)

    async def aclose(self) -> None:
        self.telemetry.unwatch()
        await self.watcher.aclose()
        await self.jobs.aclose()
        await self.webhooks.aclose()  # after the jobs: their shutdown queues callbacks
        await self.archives.aclose()
        if self.engine.shared_budget is not None:
            await self.engine.shared_budget.aclose()
        await self.http.aclose()
        await self.client.aclose()


def clear_dead_spools(own: Path) -> None:
    """Delete the spool files of processes that died (and of an earlier process with this pid);
    a live neighbour on the same data_dir keeps its own. Files of the older shared layout (before
    per-process folders) sit directly under spool/ and go too."""
    root = own.parent
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.isdigit() and entry != own and owner.alive(int(entry.name)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _upstream(
    settings: Settings, telemetry: Telemetry
) -> tuple[SimulatorState | None, httpx.AsyncClient, AutoenhanceClient, FairLimiter]:
    """The one HTTP client to Autoenhance (or, in demo mode, to the embedded simulator), metered and traced,
    and the process-wide download budget its breaker adapts."""
    simulator_state = None
    api_key: str | None
    read_timeout = min(30.0, settings.image_timeout_seconds)
    timeout = httpx.Timeout(connect=10.0, read=read_timeout, write=30.0, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.max_global_downloads + 10)
    if settings.demo_mode:
        if settings.web_concurrency > 1:
            log.warning(
                "demo mode with %d processes: each runs its own simulator, so an order made with "
                "create-order exists only in the process that made it; use one process to try uploads",
                settings.web_concurrency,
            )
        from simulator import SimulatorState, create_app
        from simulator.demo import seed_demo

        simulator_state = SimulatorState(
            download_latency=settings.demo_latency_seconds,
            max_upload_bytes=settings.max_upload_bytes,
            max_upload_pixels=settings.upload_pixel_limit,
            upload_store_bytes=settings.demo_upload_store_bytes,
        )
        seed_demo(simulator_state)
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=create_app(simulator_state))
        base_url, api_key = DEMO_BASE_URL, "demo-key"  # the embedded simulator accepts any key
        proxies: dict[str, str] = {}
    else:
        transport = EnvProxyTransport(limits)  # HTTP(S)_PROXY / NO_PROXY, as httpx alone would
        proxies = transport.proxies  # the byte path routes by the same reading of the environment
        base_url = settings.autoenhance_base_url
        api_key = settings.autoenhance_api_key.get_secret_value() if settings.autoenhance_api_key else None
    http = httpx.AsyncClient(transport=telemetry.meter(transport, base_url), timeout=timeout, follow_redirects=False)

    most, floor = settings.process_downloads  # N processes on one box share MAX_GLOBAL_DOWNLOADS
    limiter = FairLimiter(most, minimum=floor)
    guard = UpstreamGuard(limiter, threshold=settings.breaker_threshold, reset_seconds=settings.breaker_reset_seconds)
    make: Callable[..., AutoenhanceClient] = AutoenhanceClient
    if telemetry.tracer is not None:
        from app.ops.tracing import TracedAutoenhanceClient

        make = functools.partial(TracedAutoenhanceClient, tracer=telemetry.tracer)
    client = build_client(  # built as direct mode builds it (app/core/upstream/factory.py), plus metrics, tracing, breaker
        base_url=base_url,
        api_key=api_key,
        http=http,
        read_timeout=read_timeout,
        asset_hosts=settings.allowed_asset_hosts,
        proxies=proxies,
        observe=telemetry.observe_downloads(base_url),
        images_over_http=settings.demo_mode,  # the simulator is in-process: httpx reaches it, sockets cannot
        make=make,
        attempts=settings.retry_attempts,
        order_timeout=settings.order_timeout_seconds,
        image_timeout=settings.image_timeout_seconds,
        guard=guard,
        max_json_bytes=settings.max_upstream_json_bytes,
        api_version=settings.autoenhance_api_version,
    )
    return simulator_state, http, client, limiter


def _archives(settings: Settings, engine: Engine, stats: Stats, redis_url: str | None) -> Archives:
    """The archive policy with its stores: the disk cache, single-flight (across the processes of this
    box through DATA_DIR; across instances only with S3, since a follower elsewhere could not read a
    disk result) and, with Redis + S3, the shared cache."""
    cache = ArchiveCache(settings.cache_dir, settings.cache_max_bytes, settings.cache_ttl_seconds)
    flights = Flights.from_url(
        redis_url if settings.s3_bucket else None, settings.redis_key_prefix, box_dir=settings.data_dir / "flights"
    )
    shared = None
    if redis_url and settings.s3_bucket and cache.enabled:
        from app.archives.shared import SharedCache
        from app.core.redis_client import connect
        from app.storage.s3 import s3_store

        shared = SharedCache(
            connect(redis_url),
            s3_store(settings),
            settings.redis_key_prefix,
            settings.s3_prefix,
            settings.cache_ttl_seconds,
        )
    layouts = LayoutStore.for_settings(
        settings.data_dir, redis_url, settings.redis_key_prefix, settings.cache_ttl_seconds
    )
    numbering = Numbering.for_settings(settings.data_dir, redis_url, settings.redis_key_prefix)
    return Archives(engine, cache, flights, shared, stats, layouts, numbering)
