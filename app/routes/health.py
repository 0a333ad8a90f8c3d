"""Operator routes: /health for uptime monitors, /api/stats for counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.config import DEMO_ORDER_ID
from app.services import ServicesDep

router = APIRouter(tags=["operations"])


@router.head("/health", include_in_schema=False)
@router.get("/health", summary="Liveness and mode (GET or HEAD, for uptime monitors)")
async def health(request: Request) -> dict[str, Any]:
    from app import __version__

    settings = request.app.state.settings
    return {
        "status": "ok",
        "mode": "demo" if settings.demo_mode else "live",
        "api_key_configured": not settings.demo_mode,
        "demo_order_id": DEMO_ORDER_ID if settings.demo_mode else None,
        "version": __version__,
    }


@router.get("/api/stats", summary="Runtime counters")
async def stats(services: ServicesDep) -> dict[str, Any]:
    snapshot = services.stats.snapshot()
    snapshot["cache"] = {
        "hits": services.cache.hits,
        "misses": services.cache.misses,
        "bytes": services.cache.size_bytes(),
    }
    snapshot["downloads"] = {
        "in_flight": services.engine.limiter.in_use,
        "waiting": services.engine.limiter.waiting,
        "budget": services.engine.limiter.capacity,
        "active_batches": services.engine.active_batches,
    }
    return snapshot
