"""The FastAPI application: middleware, error handlers and routers around the shared services.

`create_app(settings)` builds the service; `app` (for `uvicorn app:app`) is created on first
access, from the environment, so importing the package has no side effects.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.api.forwarded import ForwardedClientMiddleware
from app.api.intake import IntakeMiddleware
from app.api.ratelimit import install_rate_limit
from app.api.security import SecurityHeadersMiddleware
from app.api.streams import install_stream_caps
from app.config import Settings
from app.core.delivery.set_file import load_sets
from app.errors import ServiceError
from app.ops.logs import configure_logging, configure_sentry
from app.ops.metrics import RequestMetrics
from app.ops.telemetry import Telemetry
from app.ops.tracing import RequestTracing
from app.version import __version__
from app.wiring import Services

log = logging.getLogger("app")

API_PREFIX = "/v1"
"""The versioned API; unversioned paths are kept as aliases."""

DESCRIPTION = """
Turns an [Autoenhance.ai](https://autoenhance.ai) order into **one streamed ZIP** of its enhanced
images. Images are fetched concurrently (bounded, fairly shared), each written into the ZIP as it
completes; a partial result is a valid answer with `_download_report.txt` inside.

Without `AUTOENHANCE_API_KEY` the service runs in **demo mode** against its built-in Autoenhance
simulator, seeded with a demo order (see `GET /health`).
"""

TAGS = [
    {"name": "batch", "description": "Download a whole order as one ZIP, streamed."},
    {"name": "jobs", "description": "The same archive, prepared in the background: 202, poll, download."},
    {"name": "webhooks", "description": "Watch an order until Autoenhance finishes it; Autoenhance's webhook."},
    {"name": "orders", "description": "Create Autoenhance orders (spends credits: admin only)."},
    {"name": "operations", "description": "Health and counters for operators and uptime monitors."},
]


def disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from a file write, or SQLite's SQLITE_FULL."""
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    configure_sentry(settings)

    telemetry = Telemetry.from_settings(settings)  # before the lifespan: the middleware needs it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings, telemetry)
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()
            telemetry.shutdown()

    app = FastAPI(
        title="Autoenhance Batch",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.telemetry = telemetry
    # read now, so a wrong DELIVERY_SETS stops the start with the entry and field named
    app.state.delivery_sets = load_sets(settings.delivery_sets) if settings.delivery_sets else {}

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def shared_store_down(_: Request, exc: Exception) -> JSONResponse:
        # REDIS_URL set and Redis not answering: jobs, watches and callbacks cannot be recorded
        log.error("Redis unreachable", extra={"error": type(exc).__name__})
        body = {"detail": "The service's shared store (Redis) is not answering; try again shortly"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RedisOutOfMemoryError)
    @app.exception_handler(RedisReadOnlyError)
    async def shared_store_refuses_writes(_: Request, exc: Exception) -> JSONResponse:
        # full under `noeviction`, or a read-only replica: it answers, but records nothing; /ready says so
        log.error("Redis refuses writes", extra={"error": type(exc).__name__})
        body = {"detail": "The service's shared store (Redis) refuses writes (full or read-only); try again later"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "30"})

    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.OperationalError)
    async def storage_failed(_: Request, exc: Exception) -> JSONResponse:
        # a full DATA_DIR must say so (503, retry later), not be a bare 500; /ready reports it too
        if not disk_full(exc):
            raise exc
        log.error("disk full: DATA_DIR (%s) has no space left; request refused with 503", settings.data_dir)
        body = {"detail": "The service's disk is full, so it cannot record this request; try again later"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "60"})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # rendered by the outermost error middleware, which then re-raises so the server logs the trace
        return JSONResponse({"detail": "Internal error; the service log has the details"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for err in errors:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        detail = "Invalid request: " + "; ".join(parts)
        clean = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return JSONResponse({"detail": detail, "errors": clean}, status_code=422)

    from app.api.routes import batch, docs, health, jobs, listing, metrics, orders, photos, shares, ui, webhooks

    # The API lives under /v1/; the unversioned paths stay as aliases, served but left out of the
    # OpenAPI document so generated clients and new callers pick the versioned path (docs/api.md).
    for module in (batch, jobs, shares, webhooks, orders, listing, photos):
        app.include_router(module.router, prefix=API_PREFIX)
        app.include_router(module.router, include_in_schema=False)
    app.include_router(health.api_router, prefix=API_PREFIX)
    app.include_router(health.api_router, include_in_schema=False)
    for module in (health, metrics, ui, docs):  # probes, metrics, the page and the docs are not versioned
        app.include_router(module.router)
    app.include_router(shares.public)  # share links: opened by people, never versioned, no key
    ui.mount_static(app)
    docs.mount_docs_assets(app)

    install_stream_caps(app, settings)  # innermost: a request the rate limit refuses holds no download
    app.add_middleware(IntakeMiddleware, settings=settings)  # credentials and sizes before any body is read
    install_rate_limit(app, settings)  # outside the intake checks, so refused credentials count; inside CORS and the security headers: a 429 carries both
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
            allow_headers=["X-API-Key", "X-Admin-Token", "Range", "Content-Type"],
            expose_headers=["Content-Disposition", "X-Total-Images", "X-Downloaded", "X-Failed", "X-Request-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    if telemetry.tracer is not None:
        app.add_middleware(RequestTracing, tracer=telemetry.tracer)
    app.add_middleware(RequestMetrics, metrics=telemetry.metrics)  # times everything
    if settings.trusted_proxy_hops:  # outermost: every layer (rate limit, logs, tracing) sees the same caller
        app.add_middleware(ForwardedClientMiddleware, hops=settings.trusted_proxy_hops)
    return app


_default_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _default_app
    if name == "app":
        if _default_app is None:
            _default_app = create_app()
        return _default_app
    raise AttributeError(name)
