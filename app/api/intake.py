"""Credentials and sizes before bodies: the checks a request meets before a byte of its body is read.

FastAPI reads (and parses) a body before it runs a route's dependencies, so without this a wrong
token costs whatever body the caller chose to send, and a malformed body answers 400 before the
token is looked at. This pure ASGI middleware runs first:

1. a route that takes a body and a credential has its credential checked from the headers (the same
   checks as the route dependencies, app/api/security.py), so a refused caller sends no body;
2. a `Content-Length` over the route's limit is a 413 at once;
3. a body without a length is counted while it is read, and cut with 413 at the limit;
4. a body must keep arriving: after BODY_TIMEOUT_SECONDS it must average MIN_BODY_RATE, and no
   wait for its next piece may last longer than BODY_TIMEOUT_SECONDS; else 408.

Refusals made with a body still unread carry `Connection: close`, so the server drops the rest.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.security import admin_refusal, autoenhance_refusal, service_key_refusal
from app.config import Settings
from app.errors import ServiceError

KiB = 1024
SMALL_BODY_LIMIT = 16 * KiB
"""Every body but an upload: the JSON bodies the API takes hold one URL (at most 2 KiB)."""
WEBHOOK_BODY_LIMIT = 64 * KiB
"""Autoenhance's event is a few hundred bytes; room for fields it may add."""
MULTIPART_OVERHEAD = 64 * KiB
"""Per uploaded part and per request: boundaries, part headers, the name field."""
MIN_BODY_RATE = 8 * KiB
"""Bytes per second a body must average once BODY_TIMEOUT_SECONDS have passed (64 kbit/s)."""

Gate = Callable[[Settings, Headers], ServiceError | None]


@dataclass(frozen=True)
class Door:
    """A POST route that takes a body: its credential check and its body limit."""

    path: re.Pattern[str]
    gate: Gate
    limit: Callable[[Settings], int]
    why: str = ""
    """Appended to the 413 detail: which settings make the limit."""


def _upload_limit(settings: Settings) -> int:
    return settings.max_upload_files * (settings.max_upload_bytes + MULTIPART_OVERHEAD) + MULTIPART_OVERHEAD


def _service_key(settings: Settings, headers: Headers) -> ServiceError | None:
    return service_key_refusal(settings, headers.get("x-api-key"))


def _admin(settings: Settings, headers: Headers) -> ServiceError | None:
    return admin_refusal(settings, headers.get("x-admin-token"))


def _autoenhance(settings: Settings, headers: Headers) -> ServiceError | None:
    return autoenhance_refusal(settings, headers.get("authorization"))


DOORS = (
    Door(re.compile(r"/orders/[^/]+/(jobs|watch)"), _service_key, lambda _: SMALL_BODY_LIMIT),
    Door(re.compile(r"/webhooks/autoenhance"), _autoenhance, lambda _: WEBHOOK_BODY_LIMIT),
    Door(re.compile(r"/api/create-order"), _admin, _upload_limit, " (MAX_UPLOAD_FILES photos of MAX_UPLOAD_BYTES)"),
    Door(re.compile(r"/api/create-sample-order"), _admin, lambda _: SMALL_BODY_LIMIT),
)


def api_path(scope: Scope) -> str:
    """The route's path without the proxy's root_path and without the /v1 prefix (aliases are the same route)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:] or "/"
    return path


def too_large(limit: int, door: Door | None) -> str:
    return f"The request body is over this route's {limit} byte limit{door.why if door else ''}"


class BodyRefused(HTTPException):
    """413 or 408 raised from inside `receive`.

    An HTTPException, not one of the service's errors (app/errors.py): FastAPI turns any other
    exception raised while it reads a body into a 400, and passes an HTTPException through as it is.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail, headers={"Connection": "close"})


async def answer(send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class IntakeMiddleware:
    """Credential, size and pace checks on every request body (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        door = self._door(scope)
        limit = door.limit(self.settings) if door else SMALL_BODY_LIMIT
        length = headers.get("content-length")
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        closing = {"Connection": "close"} if has_body else {}
        refusal = door.gate(self.settings, headers) if door else None
        if refusal is not None:
            await answer(send, refusal.status_code, refusal.message, {**refusal.headers, **closing})
            return
        if length is not None and length.isdigit() and int(length) > limit:
            await answer(send, 413, too_large(limit, door), closing)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._paced(receive, limit, door), watched_send)
        except BodyRefused as exc:  # raised where no FastAPI handler turned it into an answer
            if started:
                raise
            await answer(send, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @staticmethod
    def _door(scope: Scope) -> Door | None:
        if scope["method"] != "POST":
            return None
        path = api_path(scope)
        return next((door for door in DOORS if door.path.fullmatch(path)), None)

    def _paced(self, receive: Receive, limit: int, door: Door | None) -> Receive:
        """`receive` that counts the body and keeps it to pace; after the body, untouched (disconnect waits)."""
        grace = self.settings.body_timeout_seconds
        start = time.monotonic()
        received = 0
        done = False

        async def paced() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            now = time.monotonic()
            deadline = min(now + grace, start + grace + received / MIN_BODY_RATE)
            try:
                async with asyncio.timeout(max(0.0, deadline - now)):
                    message = await receive()
            except TimeoutError:
                raise BodyRefused(
                    408, f"The request body arrived too slowly (under {MIN_BODY_RATE} bytes/s after {grace:g} s)"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyRefused(413, too_large(limit, door))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return paced
