"""Operator routes: /health (alive), /ready (able to serve), /api/stats (counters).

/health and /ready are probes, not API: they stay unversioned. /ready answers 503 when a dependency
fails, naming which, so an orchestrator stops routing traffic here and an operator sees why.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api.deps import ServicesDep
from app.api.responses import error
from app.config import DEMO_ORDER_ID, Settings
from app.wiring import Services

router = APIRouter(tags=["operations"])
api_router = APIRouter(tags=["operations"])

PROBE_TIMEOUT_SECONDS = 3.0
"""Each readiness check gets this long; a probe must answer well inside an orchestrator's timeout."""


@router.head("/health", include_in_schema=False)
@router.get("/health", summary="Liveness and mode (GET or HEAD, for uptime monitors)")
async def health(request: Request) -> dict[str, Any]:
    from app.version import __version__

    settings = request.app.state.settings
    return {
        "status": "ok",
        "mode": "demo" if settings.demo_mode else "live",
        "api_key_configured": not settings.demo_mode,
        "demo_order_id": DEMO_ORDER_ID if settings.demo_mode else None,
        "version": __version__,
    }


def _check(ok: bool, detail: str, started: float) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, "seconds": round(time.perf_counter() - started, 4)}


async def check_upstream(services: Services) -> dict[str, Any]:
    """One listing call with our key, no retries: proves Autoenhance answers and accepts the key."""
    started = time.perf_counter()
    client = services.client
    url = f"{client.base_url}/v3/orders/"
    # Not client.list_orders(): that one retries for up to ORDER_TIMEOUT_SECONDS, and a probe must
    # answer within seconds and report the first failure as it is. Same credentials, same transport.
    try:
        response = await services.http.get(
            url, params={"per_page": 1}, headers=client._headers(url), timeout=PROBE_TIMEOUT_SECONDS
        )
    except httpx.TimeoutException:
        return _check(False, f"Autoenhance did not answer within {PROBE_TIMEOUT_SECONDS:g}s", started)
    except httpx.TransportError as exc:
        return _check(False, f"Autoenhance could not be reached ({type(exc).__name__})", started)
    if response.status_code in (401, 403):
        return _check(False, f"Autoenhance rejected the API key (HTTP {response.status_code})", started)
    if response.status_code != 200:
        return _check(False, f"Autoenhance answered HTTP {response.status_code}", started)
    return _check(True, "reachable, key accepted", started)


def _write_probe(directory: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=".ready-", dir=directory)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)


async def check_storage(settings: Settings) -> dict[str, Any]:
    """Create, sync and delete a file in DATA_DIR and in the jobs directory (in a thread: disk I/O)."""
    started = time.perf_counter()
    for directory in (settings.data_dir, settings.jobs_dir):
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await asyncio.to_thread(_write_probe, directory)
        except TimeoutError:
            return _check(False, f"{directory} did not accept a write within {PROBE_TIMEOUT_SECONDS:g}s", started)
        except OSError as exc:
            return _check(False, f"{directory} is not writable ({exc.strerror or type(exc).__name__})", started)
    return _check(True, "writable", started)


REDIS_OUT_OF_MEMORY = "Redis refuses writes: out of memory (maxmemory reached under noeviction)"
REDIS_READ_ONLY = "Redis refuses writes: it is a read-only replica"
REDIS_MISCONF = "Redis refuses writes: it cannot save its data to disk (MISCONF)"


async def check_redis(url: str, prefix: str) -> dict[str, Any]:
    """Write a short-lived key to the configured Redis: a Redis that answers PING but refuses writes
    (full under `noeviction`, a read-only replica, a failing disk) cannot take jobs or webhooks."""
    from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

    from app.core.redis_client import client as redis_client

    started = time.perf_counter()
    client = redis_client(  # no retries: one probe, bounded by the timeout below
        url, socket_timeout=PROBE_TIMEOUT_SECONDS, socket_connect_timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await client.set(f"{prefix}ready:probe", "1", px=5000)
    except OutOfMemoryError:
        return _check(False, REDIS_OUT_OF_MEMORY, started)
    except ReadOnlyError:
        return _check(False, REDIS_READ_ONLY, started)
    except ResponseError as exc:
        misconf = str(exc).startswith("MISCONF")
        return _check(False, REDIS_MISCONF if misconf else "Redis refused a write", started)
    except (RedisError, OSError, TimeoutError) as exc:
        return _check(False, f"Redis did not answer ({type(exc).__name__})", started)
    finally:
        await client.aclose()
    return _check(True, "accepted a write", started)


READY_EXAMPLE = {
    "status": "ready",
    "autoenhance_api_version": "2026-11-09",
    "checks": {
        "upstream": {"ok": True, "detail": "reachable, key accepted", "seconds": 0.08},
        "storage": {"ok": True, "detail": "writable", "seconds": 0.002},
    },
}


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    summary="Readiness: upstream reachable, storage writable, Redis when configured",
    description="200 when every check passes, 503 otherwise; each check says what it found. Redis is checked "
    "only when REDIS_URL is set. Each check is bounded to a few seconds.",
    responses={
        200: {"description": "Ready", "content": {"application/json": {"example": READY_EXAMPLE}}},
        503: error("A dependency failed: `checks` says which and why"),
    },
)
async def ready(services: ServicesDep) -> JSONResponse:
    settings = services.settings
    names = ["upstream", "storage"]
    probes = [check_upstream(services), check_storage(settings)]
    if settings.redis_url:
        names.append("redis")
        probes.append(check_redis(settings.redis_url.get_secret_value(), settings.redis_key_prefix))
    checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
    ok = all(check["ok"] for check in checks.values())
    failing = [name for name, check in checks.items() if not check["ok"]]
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
    body["autoenhance_api_version"] = settings.autoenhance_api_version  # what every upstream call asks for
    if not ok:
        body["detail"] = "Not ready: " + ", ".join(f"{name} ({checks[name]['detail']})" for name in failing)
    return JSONResponse(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})


@api_router.get("/api/stats", summary="Runtime counters")
async def stats(services: ServicesDep) -> dict[str, Any]:
    snapshot = services.stats.snapshot()
    snapshot["cache"] = services.archives.cache_stats()
    snapshot["downloads"] = {
        "in_flight": services.engine.limiter.in_use,
        "waiting": services.engine.limiter.waiting,
        "budget": services.engine.limiter.capacity,
        "active_batches": services.engine.active_batches,
    }
    memory = services.engine.spool_memory
    snapshot["spools"] = {"memory_bytes": memory.held, "memory_peak_bytes": memory.peak}
    snapshot["tasks"] = len(asyncio.all_tasks())  # flat when idle: the soak checks nothing leaks
    snapshot["breaker"] = await services.client.guard.state()  # closed, opened or half-opened
    return snapshot
