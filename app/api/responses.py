"""Response helpers and OpenAPI descriptions shared by the routes (streaming, job downloads, callbacks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter
from fastapi.routing import BaseRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.stall import StreamStalled, guarded
from app.archives.resume import PastEnd, Replay
from app.archives.service import Finished, NotModified
from app.core.naming import content_disposition
from app.core.zip.format import Piece
from app.errors import BadRequest, UnsatisfiableRange
from app.webhooks.payload import JobCallback

CLEANUP_SECONDS = 10.0
"""How long a streamed archive's cleanup may outlive its request's cancellation."""


class ArchiveResponse(StreamingResponse):
    """A streaming ZIP that stops the moment its client hangs up.

    Starlette (ASGI 2.4 servers) notices a disconnect only when the next chunk fails to send, and
    our next chunk may be a whole image download away. So we also listen for `http.disconnect`
    and cancel at once, and always close the generator so its downloads and spool files go too.
    A reader that takes nothing for STREAM_STALL_TIMEOUT_SECONDS is treated the same way, and its
    response is cut (app/api/stall.py).
    """

    media_type = "application/zip"

    def __init__(
        self,
        content: AsyncIterator[Piece],
        *,
        headers: dict[str, str],
        on_close: Callable[[], Awaitable[None]],
        status_code: int = 200,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = guarded(send, scope)
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    with contextlib.suppress(OSError):  # gone, or stalled (StreamStalled): cut, never ended
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    await self.listen_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        finally:
            # shielded, within a bound: a cancelled request (server shutdown) still releases what the
            # body holds, but a slow share to S3 cannot hold the shutdown (the claim then lapses by lease)
            with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                body: Any = self.body_iterator
                try:
                    if hasattr(body, "aclose"):
                        await body.aclose()
                finally:
                    await self._on_close()  # also when the body never started: a generator closed unstarted runs no finally


class ArchiveFileResponse(FileResponse):
    """A finished archive from disk (cache hit, job result), read 1 MiB at a time.

    Each chunk costs a worker-thread hop and a pass through every middleware; Starlette's 64 KiB
    default made a cache hit a quarter slower than a plain static file server (`make bench`).
    """

    chunk_size = 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(StreamStalled):  # cut (app/api/stall.py): the file's handle closes with it
            await super().__call__(scope, receive, guarded(send, scope))

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        """Starlette answers a bad Range in text/plain; every error of the API is JSON `{"detail"}`.

        Raised as the service's errors, the app's handler renders them (the response runs inside the route).
        """
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as exc:
            raise BadRequest(f"Bad Range header ({exc.content.rstrip('.')}); send 'bytes=<start>-[<end>]'") from None
        except RangeNotSatisfiable as exc:
            raise UnsatisfiableRange(
                f"The range starts past the end of the archive ({exc.max_size} bytes)",
                headers={"Content-Range": f"bytes */{exc.max_size}"},
            ) from None


def finished_response(found: Finished, order_name: str | None, order_id: str) -> Response:
    """A finished archive from the archive policy: a file of this instance's cache (Range-capable), or
    the shared cache's object streamed from S3 with its known length. X-Cache says which."""
    headers = archive_headers(order_name, order_id, found.total, found.downloaded, 0) | {"X-Cache": found.source}
    if found.layout_id is not None and found.modified is not None:  # stable: never the file's own mtime
        headers |= {"ETag": f'"{found.layout_id}"', "Last-Modified": formatdate(found.modified, usegmt=True)}
    if found.path is not None:
        return ArchiveFileResponse(found.path, media_type="application/zip", headers=headers)
    if found.chunks is None:
        raise ValueError(f"a {found.source!r} archive has nothing to send")
    headers["Content-Length"] = str(found.size)
    return SharedArchiveResponse(found.chunks(), media_type="application/zip", headers=headers)


def not_modified_response(unchanged: NotModified) -> Response:
    """304: the archive the caller holds is still this URL's."""
    headers = {"ETag": f'"{unchanged.layout_id}"', "Last-Modified": formatdate(unchanged.modified, usegmt=True)}
    return Response(status_code=304, headers=headers)


def past_end_response(past: PastEnd) -> Response:
    """416: the resume offset is at or past the end of the archive the caller holds."""
    return Response(status_code=416, headers={"Content-Range": f"bytes */{past.total}", "ETag": past.etag})


def resumed_response(replay: Replay, order_name: str | None, order_id: str) -> Response:
    """206: the archive from the replay's start, which the response owns from then on (closed when it ends)."""
    layout = replay.layout
    headers = archive_headers(order_name, order_id, layout.total_images, replay.downloaded, layout.failed)
    headers |= {
        "ETag": layout.etag,
        "Accept-Ranges": "bytes",
        "Content-Range": f"bytes {replay.start}-{replay.total - 1}/{replay.total}",
        "Content-Length": str(replay.total - replay.start),
        "X-Cache": "resume",
    }
    return ArchiveResponse(replay.chunks(), headers=headers, on_close=replay.aclose, status_code=206)


class SharedArchiveResponse(StreamingResponse):
    """An archive streamed from the shared cache (S3), cut like the others when its reader stalls."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(StreamStalled, ClientDisconnect):  # Starlette turns the stall's OSError into ClientDisconnect
            await super().__call__(scope, receive, guarded(send, scope))


def archive_headers(
    order_name: str | None, order_id: str, total: int, downloaded: int | None = None, failed: int | None = None
) -> dict[str, str]:
    """Content-Disposition and the counts; X-Downloaded/X-Failed only when the archive is complete."""
    headers = {"Content-Disposition": content_disposition(order_name, order_id), "X-Total-Images": str(total)}
    if downloaded is not None and failed is not None:
        headers["X-Downloaded"] = str(downloaded)
        headers["X-Failed"] = str(failed)
    return headers


ERROR_SCHEMA = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
FAILURES_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "failures": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {k: {"type": "string"} for k in ("image_id", "name", "reason", "recovery")},
            },
        },
    },
    "required": ["detail"],
}


def error(description: str, schema: dict[str, Any] = ERROR_SCHEMA) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ZIP_CONTENT = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


_CALLBACK_DESCRIPTION = (
    "Signed per Standard Webhooks: `webhook-id` (the same on every retry), `webhook-timestamp`, "
    "`webhook-signature` = `v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>` with WEBHOOK_SECRET. "
    "Answer 2xx to acknowledge; anything else (or no answer within WEBHOOK_TIMEOUT_SECONDS) is retried "
    "with exponential backoff for WEBHOOK_RETRY_WINDOW_SECONDS; 410 stops the retries."
)


def callbacks_for(operation: str) -> list[BaseRoute]:
    """The OpenAPI `callbacks` of one operation: the POST we make to the URL from the body or the header.

    Built per operation because operationIds must be unique across the whole document.
    """
    router = APIRouter()

    @router.post(
        "{$request.body#/callback_url}",
        name="jobFinished",
        operation_id=f"{operation}_jobFinished",
        summary="The job ended (completed, completed_with_errors or failed)",
        description=_CALLBACK_DESCRIPTION,
        responses={200: {"description": "Received (any 2xx)"}},
    )
    def job_finished_body(body: JobCallback) -> None:  # pragma: no cover - documentation only
        ...

    @router.post(
        "{$request.header.callbackUrl}",
        name="jobFinishedViaHeader",
        operation_id=f"{operation}_jobFinishedViaHeader",
        summary="The same callback, when the URL came in the callbackUrl header",
        description=_CALLBACK_DESCRIPTION,
        responses={200: {"description": "Received (any 2xx)"}},
    )
    def job_finished_header(body: JobCallback) -> None:  # pragma: no cover - documentation only
        ...

    return router.routes


T = TypeVar("T")


async def unless_hangup(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the caller hung up first.

    A response held back while work runs (the first image, a resume's downloads) must not leave that
    work running for a caller who is gone: it is cancelled, and awaited so what it holds is released.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return None if task.cancelled() else task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
