"""Everything a request needs, built once per process in the lifespan and shared by all doors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from app.budget import FairLimiter
from app.cache import ArchiveCache
from app.config import Settings
from app.engine import Engine, EngineLimits
from app.stats import Stats
from app.upstream import AutoenhanceClient

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

    @classmethod
    async def start(cls, settings: Settings) -> Services:
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
            http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
            base_url, api_key = DEMO_BASE_URL, "demo-key"  # the embedded simulator accepts any key
        else:
            http = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)
            base_url = settings.autoenhance_base_url
            api_key = settings.autoenhance_api_key.get_secret_value() if settings.autoenhance_api_key else None

        client = AutoenhanceClient(
            base_url=base_url,
            api_key=api_key,
            http=http,
            attempts=settings.retry_attempts,
            order_timeout=settings.order_timeout_seconds,
            image_timeout=settings.image_timeout_seconds,
        )
        stats = Stats()
        engine = Engine(
            client,
            FairLimiter(settings.max_global_downloads),
            EngineLimits(
                per_order=settings.max_concurrent_downloads,
                max_images=settings.max_images_per_order,
                spool_dir=settings.spool_dir,
                spool_memory_bytes=settings.spool_memory_bytes,
                max_image_bytes=settings.max_image_bytes,
            ),
            stats,
        )
        cache = ArchiveCache(settings.cache_dir, settings.cache_max_bytes, settings.cache_ttl_seconds)
        return cls(settings, http, client, engine, cache, stats, simulator_state)

    async def aclose(self) -> None:
        if self.jobs is not None:
            await self.jobs.aclose()
        await self.http.aclose()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
