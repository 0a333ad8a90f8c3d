"""Validators and resumes of archive responses (RFC 9110 sections 8.8, 13 and 14).

Every archive response names its layout in a strong ETag (app/core/zip/layout.py). This module
answers the conditional requests on the batch route before any new archive is made:
- `If-None-Match` naming the cached archive, or a complete layout of this same order version and
  options where nothing failed: 304;
- `Range: bytes=N-` with `If-Range` naming a recorded layout of this URL: 206 with the exact
  `Content-Range`, replayed from the layout (app/core/resume.py), or 416 when N is past the end;
  if Autoenhance now serves different bytes, None: the caller makes a fresh archive (200).
Anything else (no If-Range, a weak, stale or unknown one, other range forms) falls through to the
whole archive, which RFC 9110 allows a server to send instead of a range.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime

from fastapi import Request
from fastapi.responses import Response

from app.api.responses import ArchiveResponse, archive_headers, unless_hangup
from app.archives.layout_store import layout_id_of
from app.core.models import BatchOptions, OrderInfo
from app.core.resume import LayoutChanged, LayoutRaced, Replay, prepare
from app.core.stats import Stats
from app.core.zip.format import Piece, listing_ranks
from app.core.zip.layout import Layout
from app.core.zip.writer import ZipWriter
from app.wiring import Services

log = logging.getLogger("app.ranges")

MAX_TAGS = 8
"""If-None-Match tags looked up in the layout store per request (each is a read)."""
_OPEN_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*$")


def range_start(value: str | None) -> int | None:
    """N of `bytes=N-` (what `curl -C -` and browsers send to resume); None for any other form."""
    match = _OPEN_RANGE.match(value or "")
    return int(match.group(1)) if match else None


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def not_modified(request: Request, response: Response) -> bool:
    """If-None-Match names the response's ETag (a file's, set from its stat: stable while it lives)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    etag = response.headers.get("etag")
    tags = _tags(header)
    return "*" in tags or (etag is not None and etag in tags)


def _since(request: Request) -> float | None:
    """If-Modified-Since as a timestamp (None when absent or unreadable)."""
    value = request.headers.get("if-modified-since")
    try:
        return parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None


def _tags(header: str) -> list[str]:
    """The entity tags of an If-None-Match list, weak ones compared weakly (RFC 9110 13.1.2)."""
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


async def conditional(request: Request, services: Services, order: OrderInfo, options: BatchOptions) -> Response | None:
    """A 304, 206 or 416 for this request, or None to answer with the whole archive.

    Asked before the archive policy, so a 304 or a resume opens no batch. The cached archive's ETag
    is the layout id of the stream that made it, so the layout store answers for it too."""
    archives = services.archives
    key = archives.key(order, options)
    if none_match := request.headers.get("if-none-match"):
        for tag in _tags(none_match)[:MAX_TAGS]:
            layout_id = layout_id_of(tag)
            layout = await archives.layouts.load(layout_id) if layout_id else None
            if layout is not None and layout.key == key and layout.complete and layout.failed == 0:
                return Response(
                    status_code=304, headers={"ETag": layout.etag, "Last-Modified": http_date(layout.created_at)}
                )
    cached = archives.cached_layout(key)
    since = None if none_match else _since(request)  # If-None-Match decides when present (RFC 9110 13.2.2)
    if cached is not None and since is not None and cached[1] <= since:
        return Response(status_code=304, headers={"ETag": f'"{cached[0]}"', "Last-Modified": http_date(cached[1])})
    start = range_start(request.headers.get("range"))
    layout_id = layout_id_of(request.headers.get("if-range"))
    if request.method == "HEAD" or start is None or layout_id is None or (cached and cached[0] == layout_id):
        return None  # nothing to resume here, or the cached file answers the range itself
    layout = await archives.layouts.load(layout_id)
    if layout is None or layout.key != key:
        return None  # stale or unknown: the whole archive
    return await _resume(request, services, order, options, layout, start)


async def _resume(
    request: Request, services: Services, order: OrderInfo, options: BatchOptions, layout: Layout, start: int
) -> Response | None:

    async def replay_of(recorded: Layout) -> Replay | None:
        recording = await services.archives.layouts.resume(recorded)
        return await unless_hangup(request, prepare(services.engine, order, options, recording, start))

    try:
        try:
            replay = await replay_of(layout)
        except LayoutRaced:  # another resume completed it meanwhile: go by its completion
            reloaded = await services.archives.layouts.load(layout.layout_id)
            if reloaded is None or not reloaded.complete:
                return None
            replay = await replay_of(reloaded)
    except LayoutChanged as exc:
        log.warning("resume refused: upstream bytes changed", extra={"layout_id": layout.layout_id, "why": str(exc)})
        return None
    if replay is None:
        return Response(status_code=499)
    try:  # the replay holds spools: released if the response cannot be made
        return await _replay_response(replay, services, order, layout, start)
    except BaseException:
        await asyncio.shield(replay.aclose())
        raise


async def _replay_response(replay: Replay, services: Services, order: OrderInfo, layout: Layout, start: int) -> Response:
    if start >= replay.total:
        await replay.aclose()
        return Response(status_code=416, headers={"Content-Range": f"bytes */{replay.total}", "ETag": layout.etag})
    downloaded = sum(1 for m in layout.members if m.image_id)
    headers = archive_headers(order.name, order.order_id, layout.total_images, downloaded, layout.failed)
    headers |= {
        "ETag": layout.etag,
        "Accept-Ranges": "bytes",
        "Content-Range": f"bytes {start}-{replay.total - 1}/{replay.total}",
        "Content-Length": str(replay.total - start),
        "X-Cache": "resume",
    }

    log.info("resuming an archive", extra={"layout_id": layout.layout_id, "start": start, "refetched": replay.fetched})
    return ArchiveResponse(_replay_bytes(replay, services.stats), headers=headers, on_close=replay.aclose, status_code=206)


async def _replay_bytes(replay: Replay, stats: Stats) -> AsyncIterator[Piece]:
    ranks = listing_ranks(name for _, name in replay.layout.plan)
    writer = ZipWriter(zip32_limit=replay.layout.zip32_limit, start=replay.start, ranks=ranks)
    for member in replay.members:
        writer.feed(member)
    writer.finish()
    async for chunk in writer.chunks():
        stats.bytes_sent += len(chunk)
        yield chunk
