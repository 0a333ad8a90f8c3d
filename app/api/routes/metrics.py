"""GET /metrics: the Prometheus exposition of this process (app/ops/metrics.py), guarded by METRICS_TOKEN."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.security import MetricsToken
from app.ops.telemetry import Telemetry

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Text exposition format. Request count and latency by route and status (time to first byte "
    "separate from total stream time), upstream call latency and outcomes, images, bytes, cache, download "
    "budget, jobs by status.",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "METRICS_TOKEN is set and the bearer token is missing or wrong"},
    },
    dependencies=[MetricsToken],
)
async def metrics_endpoint(request: Request) -> Response:
    telemetry: Telemetry = request.app.state.telemetry  # there before the lifespan starts, unlike the services
    return Response(await telemetry.render(), media_type=CONTENT_TYPE_LATEST)
