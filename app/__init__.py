"""Autoenhance Batch: one streamed ZIP for a whole Autoenhance order.

`create_app(settings)` builds the service; `app` (for `uvicorn app:app`) is created on first
access, from the environment, so importing the package has no side effects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.config import Settings
from app.errors import ServiceError
from app.observability import configure_logging, configure_sentry
from app.security import SecurityHeadersMiddleware
from app.services import Services

__version__ = "1.0.0"

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
    {"name": "orders", "description": "Create Autoenhance orders (spends credits: admin only)."},
    {"name": "operations", "description": "Health and counters for operators and uptime monitors."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    configure_sentry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.start(settings)
        app.state.services = services
        from app.jobs import JobManager

        services.jobs = await JobManager.start(services)
        try:
            yield
        finally:
            await services.aclose()

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

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

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

    from app.routes import batch, docs, health, jobs, orders, ui

    for module in (batch, jobs, orders, health, ui, docs):
        app.include_router(module.router)
    ui.mount_static(app)
    docs.mount_docs_assets(app)

    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["X-API-Key", "X-Admin-Token", "Range", "Content-Type"],
            expose_headers=["Content-Disposition", "X-Total-Images", "X-Downloaded", "X-Failed", "X-Request-ID"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    return app


_default_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    global _default_app
    if name == "app":
        if _default_app is None:
            _default_app = create_app()
        return _default_app
    raise AttributeError(name)
