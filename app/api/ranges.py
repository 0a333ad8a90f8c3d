"""The validators of archive requests (RFC 9110 sections 8.8, 13 and 14), parsed; nothing more.

Every archive response names its layout in a strong ETag (app/core/zip/layout.py). This module reads
what a request says about an archive it already holds; the archive policy (app/archives/service.py)
decides what that means:
- `If-None-Match`: the layout ids it names (weak tags compared weakly), for a 304;
- `If-Modified-Since`: ignored when If-None-Match is present (RFC 9110 13.2.2);
- `Range: bytes=N-` with a strong `If-Range` naming one of our layouts: a resume from N (206 or
  416). Other range forms, or a weak or foreign If-Range, are no resume: the whole archive, which
  RFC 9110 allows a server to send instead of a range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

from fastapi import Request
from fastapi.responses import Response

from app.archives.layout_store import layout_id_of

MAX_TAGS = 8
"""If-None-Match tags looked up in the layout store per request (each is a read)."""
_OPEN_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*$")


@dataclass(frozen=True)
class Validators:
    """What a request's conditional headers ask of an archive."""

    none_match: list[str]
    """Layout ids named by If-None-Match (of its first MAX_TAGS tags)."""
    since: float | None
    """If-Modified-Since, unless If-None-Match is present."""
    resume: tuple[str, int] | None
    """(layout id named by If-Range, N of `Range: bytes=N-`) when both are there."""


def validators(request: Request) -> Validators:
    none_match = request.headers.get("if-none-match")
    ids = [layout_id_of(tag) for tag in _tags(none_match)[:MAX_TAGS]] if none_match else []
    since = None if none_match else _since(request)  # If-None-Match decides when present (RFC 9110 13.2.2)
    start = range_start(request.headers.get("range"))
    layout_id = layout_id_of(request.headers.get("if-range"))
    resume = (layout_id, start) if start is not None and layout_id is not None else None
    return Validators([i for i in ids if i is not None], since, resume)


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
