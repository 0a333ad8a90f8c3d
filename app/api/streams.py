"""How many archive downloads one caller may have in flight on this instance (pure ASGI middleware).

A streamed archive costs the service a connection, a batch and its spools (memory, then disk) for
as long as its reader takes; a resume first fetches every image it still needs. So a caller may have
at most MAX_STREAMS_PER_CALLER downloads of an order's archive (GET of /orders/{id}/images, under
/v1/ or not) in flight, of which at most MAX_RESUMES_PER_CALLER carry a `Range` (a resume, or an
attempt at one). Over either: 429 with Retry-After and a JSON `detail`, before any work is done. A
download counts from its request until its last byte is sent, or it is cut.

The caller is identified exactly as the rate limiter does (app/api/ratelimit.py: an X-API-Key
SERVICE_API_KEY accepts, else the client address). The counts are this instance's: what they
protect (connections, spools, memory) is this instance's too.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.intake import answer, api_path
from app.api.ratelimit import caller_identity
from app.config import Settings

log = logging.getLogger("app.streams")

ARCHIVE_ROUTE = re.compile(r"^/orders/[^/]+/images/?$")
RETRY_AFTER_SECONDS = 10
"""A hint: downloads end at their reader's pace, which the service cannot know."""


class CallerStreamsMiddleware:
    """429 for a caller over its archive downloads in flight; everything else passes through untouched."""

    def __init__(self, app: ASGIApp, *, streams: int, resumes: int, service_key: bytes | None = None) -> None:
        self.app = app
        self.max_streams = streams
        self.max_resumes = resumes
        self.service_key = service_key
        self.streams: Counter[str] = Counter()
        self.resumes: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not ARCHIVE_ROUTE.match(api_path(scope)):
            await self.app(scope, receive, send)
            return
        identity = caller_identity(scope, self.service_key)
        resume = any(name == b"range" for name, _ in scope.get("headers", []))
        if self.streams[identity] >= self.max_streams:
            await self._refuse(send, f"{self.max_streams} archive downloads (MAX_STREAMS_PER_CALLER)")
            return
        if resume and self.resumes[identity] >= self.max_resumes:
            await self._refuse(send, f"{self.max_resumes} resumed downloads (MAX_RESUMES_PER_CALLER)")
            return
        self.streams[identity] += 1
        self.resumes[identity] += resume
        try:
            await self.app(scope, receive, send)
        finally:
            self._give(self.streams, identity)
            if resume:
                self._give(self.resumes, identity)

    @staticmethod
    def _give(counts: Counter[str], identity: str) -> None:
        counts[identity] -= 1
        if counts[identity] <= 0:
            del counts[identity]  # no entry kept per caller once it has nothing in flight

    @staticmethod
    async def _refuse(send: Send, what: str) -> None:
        log.warning("caller over its downloads in flight: %s", what)
        detail = f"Too many downloads at once: a caller may have {what} in flight; retry when one ends"
        await answer(send, 429, detail, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def install_stream_caps(app: FastAPI, settings: Settings) -> None:
    key = settings.service_api_key.get_secret_value().encode() if settings.service_api_key else None
    app.add_middleware(
        CallerStreamsMiddleware,
        streams=settings.max_streams_per_caller,
        resumes=settings.max_resumes_per_caller,
        service_key=key,
    )
