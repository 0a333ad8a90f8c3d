"""GET /orders/{order_id}/images: the whole order as one streamed ZIP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from app.api.responses import FAILURES_SCHEMA, ZIP_CONTENT, ArchiveFileResponse, ArchiveResponse, archive_headers, error
from app.api.security import ServiceKey
from app.archives.cache import CacheWriter
from app.archives.flights import lead_or_wait
from app.archives.shared import share_and_land, shared_hit
from app.core.engine import Batch
from app.core.models import BatchOptions, ImageFormat, OrderInfo, validate_order_id
from app.core.wait import WaitDep, wait_until_ready
from app.errors import NothingSucceeded
from app.wiring import Services, ServicesDep

log = logging.getLogger("app.batch")
FLIGHT_PATIENCE_SECONDS = 120.0
"""How long a request waits for an identical one in flight before fetching by itself."""
router = APIRouter(tags=["batch"])

OrderIdPath = Annotated[
    str,
    Path(
        description="Autoenhance order id (a UUID; anything else is a 400 before any upstream call)",
        examples=["7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c"],
        json_schema_extra={"format": "uuid"},
    ),
]


def batch_options(
    format: Annotated[ImageFormat, Query(description="Output format of every image")] = ImageFormat.jpeg,
    quality: Annotated[
        int | None, Query(ge=1, le=90, description="Image quality 1-90; omit for Autoenhance's default")
    ] = None,
    preview: Annotated[
        bool, Query(description="true: free preview size; false: full resolution (spends credits unless dev_mode)")
    ] = True,
    dev_mode: Annotated[
        bool, Query(description="Send x-dev-mode: true upstream: no credits spent, watermarked result")
    ] = False,
) -> BatchOptions:
    return BatchOptions(format=format, quality=quality, preview=preview, dev_mode=dev_mode)


OptionsDep = Annotated[BatchOptions, Depends(batch_options)]

COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("The order id is not a UUID (checked before any upstream call)"),
    401: error("SERVICE_API_KEY is set and X-API-Key is missing or wrong"),
    404: error("Autoenhance does not know this order"),
    422: error(
        "Bad format/quality, an empty or oversized order, or not one image could be downloaded "
        "(then `failures` lists each image and why)",
        FAILURES_SCHEMA,
    ),
    502: error("Autoenhance rejected this service's key, failed, or answered something unreadable"),
    429: error("This caller is over RATE_LIMIT (per X-API-Key, else per address); Retry-After says when to retry"),
    503: error(
        "Autoenhance failed repeatedly, so the circuit breaker is open and the service fails fast; "
        "Retry-After says when it probes again"
    ),
}


@router.get(
    "/orders/{order_id}/images",
    summary="Download every enhanced image of an order as one ZIP",
    response_class=Response,
    dependencies=[ServiceKey],
    responses={
        200: {
            "description": "A ZIP, streamed as images complete. Holds `_download_report.txt` when some images "
            "failed, and `_manifest.json`. X-Downloaded / X-Failed are sent when the archive is complete "
            "before sending (a cache hit).",
            "content": ZIP_CONTENT,
            "headers": {
                "X-Total-Images": {"schema": {"type": "integer"}, "description": "Images in the order"},
                "X-Downloaded": {"schema": {"type": "integer"}, "description": "Only on a cache hit"},
                "X-Failed": {"schema": {"type": "integer"}, "description": "Only on a cache hit"},
                "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment with filename*"},
            },
        },
        **COMMON_ERRORS,
    },
)
async def download_order_images(
    order_id: OrderIdPath, options: OptionsDep, services: ServicesDep, request: Request, wait: WaitDep
) -> Response:
    order = await load_order(order_id, services)
    order = await wait_until_ready(services.client, order, wait, gone=request.is_disconnected)
    order_id = order.order_id
    log.info("order fetched", extra={"images": len(order.images), "options": options.key()})

    key = services.cache.key(order_id, options, order.last_updated_at)
    hit = services.cache.lookup(key)
    flight = None
    if hit is None and services.cache.enabled:  # single-flight: wait for an identical archive in the making
        flight = await lead_or_wait(services.flights, f"zip:{key}", "stream", FLIGHT_PATIENCE_SECONDS)
        hit = None if flight is not None else services.cache.lookup(key)
        shared = None if hit is not None else await shared_hit(services, key, order.name, order_id)
        if shared is not None:  # another instance made it (REDIS_URL + S3_BUCKET)
            await share_and_land(services, key, flight)
            return shared
    if hit is not None:
        meta = hit.meta
        services.stats.zips_served += 1
        services.stats.bytes_sent += hit.size
        headers = archive_headers(order.name, order_id, meta["total"], meta["downloaded"], 0) | {"X-Cache": "hit"}
        return ArchiveFileResponse(hit.path, media_type="application/zip", headers=headers)

    async def close() -> None:
        await batch.aclose()
        await share_and_land(services, key, flight)  # after the cache commit in stream_archive

    batch = await services.engine.open(order, options)
    try:
        succeeded = await first_success_or_hangup(batch, request)
    except BaseException:
        await close()
        raise
    if not succeeded:  # every image failed, or the caller left while we waited
        await close()
        if succeeded is None:
            return Response(status_code=499)
        raise NothingSucceeded(list(batch.failures), headers={"X-Total-Images": str(batch.total)})
    meta = {"order_id": order_id, "options": options.as_dict(), "total": batch.total}
    writer = services.cache.writer(key, meta)
    headers = archive_headers(order.name, order_id, batch.total) | {"X-Cache": "miss"}
    return ArchiveResponse(stream_archive(batch, writer, services), headers=headers, on_close=close)


async def load_order(order_id: str, services: Services) -> OrderInfo:
    """Validate the id (400 before any upstream call), fetch the order and bind it to the logs.

    A plain function, not a dependency: FastAPI would run a dependency even when the query
    options already failed validation, and bad input must cost no upstream call.
    """
    order_id = validate_order_id(order_id)
    structlog.contextvars.bind_contextvars(order_id=order_id)
    order = await services.client.get_order(order_id)
    services.stats.orders_processed += 1
    return order


async def first_success_or_hangup(batch: Batch, request: Request) -> bool | None:
    """Wait for the batch's first image (True) or for all to fail (False); None if the caller hung up.

    The response is held until an image succeeds, which can take many retries; a caller who gives
    up meanwhile must not leave the downloads running.
    """
    first = asyncio.ensure_future(batch.wait_first())
    hangup = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({first, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not first.done():
            first.cancel()
    return first.result() if first.done() and not first.cancelled() else None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def stream_archive(batch: Batch, writer: CacheWriter | None, services: Services) -> AsyncIterator[bytes]:
    """The batch's bytes to the caller, teed into the cache; published only if nothing failed."""
    complete = False
    try:
        async for chunk in batch.archive():
            if writer is not None:
                writer.write(chunk)
            services.stats.bytes_sent += len(chunk)
            yield chunk
        complete = True
    finally:
        if writer is not None:
            if complete and batch.failed == 0:
                writer.commit({"downloaded": batch.downloaded, "failed": 0})
            else:
                writer.discard()
        if complete:
            services.stats.zips_served += 1
            services.stats.partial_zips += int(batch.failed > 0)
        else:
            log.warning("stream ended early", extra={"order_id": batch.order.order_id, "downloaded": batch.downloaded})
