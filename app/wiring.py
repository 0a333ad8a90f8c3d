"""Everything a request needs, built once per process in the lifespan and shared by all doors."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from fastapi import Depends, Request

from app.archives.cache import ArchiveCache
from app.config import Settings
from app.core.breaker import UpstreamGuard
from app.core.budget import FairLimiter
from app.core.engine import Engine, EngineLimits
from app.core.proxies import EnvProxyTransport
from app.core.stats import Stats
from app.core.upstream import AutoenhanceClient

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

DEMO_BASE_URL = "http://simulator.demo"


@dataclass
class Services:
    settings: Settings
    http: httpx.AsyncClient
    client: AutoenhanceClient
    engine: Engine
    cache: ArchiveCache
    stats: Stats
    simulator: Any = None
    jobs: Any = None
    webhooks: Any = None
    flights: Any = None
    shared_cache: Any = None
    """app.shared_cache.SharedCache with REDIS_URL and S3_BUCKET: archives cached by any instance."""
    """app.single_flight.Flights: identical archives in flight run once (in-process, or across instances with Redis)."""

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        wrap_transport: Callable[[httpx.AsyncBaseTransport, str], httpx.AsyncBaseTransport] | None = None,
        tracer: Tracer | None = None,
    ) -> Services:
        """`wrap_transport(transport, api_base_url)` meters upstream calls; `tracer` adds order/image spans."""
        for directory in (settings.data_dir, settings.cache_dir, settings.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(settings.spool_dir, ignore_errors=True)  # spool files of a process that died
        settings.spool_dir.mkdir(parents=True, exist_ok=True)

        simulator_state = None
        api_key: str | None
        read_timeout = min(30.0, settings.image_timeout_seconds)
        timeout = httpx.Timeout(connect=10.0, read=read_timeout, write=30.0, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.max_global_downloads + 10)
        if settings.demo_mode:
            from simulator import SimulatorState, create_app
            from simulator.demo import seed_demo

            simulator_state = SimulatorState(download_latency=settings.demo_latency_seconds)
            seed_demo(simulator_state)
            transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=create_app(simulator_state))
            base_url, api_key = DEMO_BASE_URL, "demo-key"  # the embedded simulator accepts any key
        else:
            transport = EnvProxyTransport(limits)  # HTTP(S)_PROXY / NO_PROXY, as httpx alone would
            base_url = settings.autoenhance_base_url
            api_key = settings.autoenhance_api_key.get_secret_value() if settings.autoenhance_api_key else None
        if wrap_transport is not None:
            transport = wrap_transport(transport, base_url)
        http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)

        limiter = FairLimiter(settings.max_global_downloads, minimum=settings.min_global_downloads)
        guard = UpstreamGuard(
            limiter, threshold=settings.breaker_threshold, reset_seconds=settings.breaker_reset_seconds
        )
        client_options: dict[str, Any] = {
            "base_url": base_url,
            "api_key": api_key,
            "http": http,
            "attempts": settings.retry_attempts,
            "order_timeout": settings.order_timeout_seconds,
            "image_timeout": settings.image_timeout_seconds,
            "guard": guard,
        }
        if tracer is not None:
            from app.ops.tracing import TracedAutoenhanceClient

            client: AutoenhanceClient = TracedAutoenhanceClient(tracer=tracer, **client_options)
        else:
            client = AutoenhanceClient(**client_options)
        stats = Stats()
        engine = Engine(
            client,
            limiter,
            EngineLimits(
                per_order=settings.max_concurrent_downloads,
                max_images=settings.max_images_per_order,
                spool_dir=settings.spool_dir,
                spool_memory_bytes=settings.spool_memory_bytes,
                max_image_bytes=settings.max_image_bytes,
            ),
            stats,
        )
        if settings.redis_url is not None and settings.shared_budget:  # N instances, one upstream budget
            from app.core.shared_budget import SharedBudget

            engine.shared_budget = SharedBudget.from_url(
                settings.redis_url.get_secret_value(), settings.redis_key_prefix, settings.max_global_downloads
            )
        cache = ArchiveCache(settings.cache_dir, settings.cache_max_bytes, settings.cache_ttl_seconds)
        services = cls(settings, http, client, engine, cache, stats, simulator_state)
        from app.archives.flights import Flights

        redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
        # Across instances only with shared bytes (S3): a follower elsewhere could not read a disk result.
        services.flights = Flights.from_url(redis_url if settings.s3_bucket else None, settings.redis_key_prefix)
        if redis_url and settings.s3_bucket and cache.enabled:
            import redis.asyncio as aioredis

            from app.archives.shared import SharedCache
            from app.jobs.results import s3_store

            services.shared_cache = SharedCache(
                aioredis.from_url(redis_url, decode_responses=True),
                s3_store(settings),
                settings.redis_key_prefix,
                settings.s3_prefix,
                settings.cache_ttl_seconds,
            )
        return services

    async def aclose(self) -> None:
        if self.jobs is not None:
            await self.jobs.aclose()
        if self.webhooks is not None:  # after the jobs: their shutdown queues callbacks
            await self.webhooks.aclose()
        if self.flights is not None:
            await self.flights.aclose()
        if self.shared_cache is not None:
            await self.shared_cache.aclose()
        if self.engine.shared_budget is not None:
            await self.engine.shared_budget.aclose()
        await self.http.aclose()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
