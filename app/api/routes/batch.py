"""GET /orders/{order_id}/images: the whole order as one streamed ZIP.

The route only shapes HTTP: which archive to send, from where, is the archive policy's answer
(app/archives/service.py): unchanged (304), a recorded layout resumed (206, 416), a finished
archive (cache, shared cache) or a fresh build to stream.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import COMMON_ERRORS, OrderIdPath, ServicesDep, SpendingOptionsDep, WaitDep, load_order
from app.api.ranges import validators
from app.api.responses import (
    ZIP_CONTENT,
    ArchiveResponse,
    archive_headers,
    finished_response,
    not_modified_response,
    past_end_response,
    resumed_response,
    unless_hangup,
)
from app.api.security import ServiceKey
from app.archives.resume import PastEnd, StartOver
from app.archives.service import STREAM_PATIENCE_SECONDS, Build, Finished
from app.core.delivery.selection import choose, selected
from app.core.delivery.sets import files_total
from app.core.models import BatchOptions, OrderInfo
from app.core.wait import wait_until_ready
from app.errors import NothingSucceeded
from app.wiring import Services

log = logging.getLogger("app.batch")
router = APIRouter(tags=["batch"])


@router.head("/orders/{order_id}/images", include_in_schema=False, response_class=Response, dependencies=[ServiceKey])
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
                "X-Total-Images": {"schema": {"type": "integer"}, "description": "Files in the archive: photos x sets"},
                "X-Downloaded": {"schema": {"type": "integer"}, "description": "Only on a cache hit"},
                "X-Failed": {"schema": {"type": "integer"}, "description": "Only on a cache hit"},
                "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment with filename*"},
                "ETag": {"schema": {"type": "string"}, "description": "Strong; names this archive's layout"},
                "Accept-Ranges": {"schema": {"type": "string"}, "description": "bytes"},
            },
        },
        206: {
            "description": "`Range: bytes=N-` with `If-Range` equal to an earlier response's ETag: exactly the bytes "
            "that response had from N on (`Content-Range: bytes N-M/TOTAL`). A stale If-Range gets the whole 200.",
            "content": ZIP_CONTENT,
        },
        304: {"description": "`If-None-Match` names the cached archive (or a complete one of this order version)"},
        416: {"description": "`If-Range` matches but N is past the end (`Content-Range: bytes */TOTAL`)"},
        **COMMON_ERRORS,
    },
)
async def download_order_images(
    order_id: OrderIdPath, options: SpendingOptionsDep, services: ServicesDep, request: Request, wait: WaitDep
) -> Response:
    archives = services.archives
    order = await load_order(order_id, services, options.sort)
    options = choose(order, options)  # images= resolved to ids (422 for an unknown one) before any download
    if request.method != "HEAD":  # HEAD never downloads an image, nor waits for one
        order = await wait_until_ready(services.client, order, wait, gone=request.is_disconnected)
    order = await archives.numbered(order, options)  # before the key: numbers are part of it
    order_id = order.order_id
    log.info("order fetched", extra={"images": len(order.images), "options": options.key()})

    asked = validators(request)  # asked before the archive policy opens a batch: these make no new archive
    unchanged = await archives.unchanged(order, options, asked.none_match, asked.since)
    if unchanged is not None:
        return not_modified_response(unchanged)
    if request.method == "HEAD":
        return await head_response(services, order, options)
    if asked.resume is not None:
        resumed = await resume_response(request, services, order, options, *asked.resume)
        if resumed is not None:
            return resumed
    answer = await archives.find_or_build(order, options, tag="stream", patience=STREAM_PATIENCE_SECONDS)
    if isinstance(answer, Finished):
        await answer.release()  # followers may look now: it is there for them too
        archives.count_served(answer.size)
        return finished_response(answer, order.name, order_id)

    try:  # from here the build holds download slots, spools and a claim: released on any failure
        return await stream_response(request, order, answer)
    except BaseException:
        await answer.close()
        raise


async def stream_response(request: Request, order: OrderInfo, answer: Build) -> Response:
    """The response that streams `answer`, which it owns from then on (closed when it ends, however)."""
    batch = answer.batch
    succeeded = await unless_hangup(request, batch.wait_first())  # held until an image succeeds: many retries
    if not succeeded:  # every image failed, or the caller left while we waited
        await answer.close()
        if succeeded is None:
            return Response(status_code=499)
        raise NothingSucceeded(list(batch.failures), headers={"X-Total-Images": str(batch.total)})
    headers = archive_headers(order.name, order.order_id, batch.total) | {"X-Cache": "miss"}
    if (recording := await answer.record()) is not None:
        headers |= {"ETag": recording.layout.etag, "Accept-Ranges": "bytes"}
    return ArchiveResponse(answer.stream(), headers=headers, on_close=answer.close)


async def resume_response(
    request: Request, services: Services, order: OrderInfo, options: BatchOptions, layout_id: str, start: int
) -> Response | None:
    """206 or 416 for a recorded layout resumed from `start`, 499 if the caller left while its images
    were fetched; None when the whole archive is the answer instead (200)."""
    resumed = await unless_hangup(request, services.archives.resume(order, options, layout_id, start))
    if resumed is None:
        return Response(status_code=499)
    if isinstance(resumed, StartOver):
        return None
    if isinstance(resumed, PastEnd):
        return past_end_response(resumed)
    try:  # the replay holds spools: released if the response cannot be made
        return resumed_response(resumed, order.name, order.order_id)
    except BaseException:
        await asyncio.shield(resumed.aclose())
        raise


async def head_response(services: Services, order: OrderInfo, options: BatchOptions) -> Response:
    """What a GET would answer, without its body and without downloading an image: a finished
    archive's headers, else those a stream starts with (its ETag and length are not known yet)."""
    found = await services.archives.finished(order, options)
    if found is not None:
        response = finished_response(found, order.name, order.order_id)
        if found.path is not None:
            return response  # a file: Starlette answers HEAD (and its Range) with no body
        return Response(media_type="application/zip", headers=dict(response.headers))  # S3-streamed: no body here
    chosen = selected(order, options)
    services.engine.check(chosen)  # the same 422 a GET would answer for an empty or oversized order
    headers = archive_headers(order.name, order.order_id, files_total(chosen, options))
    response = Response(media_type="application/zip", headers=headers | {"Accept-Ranges": "bytes", "X-Cache": "miss"})
    del response.headers["content-length"]  # not built yet: its length is unknown, not 0
    return response
