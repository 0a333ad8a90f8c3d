"""Inbound rate limiting per caller (the `limits` library), as pure ASGI middleware.

A caller is its X-API-Key when it presents one SERVICE_API_KEY accepts (hashed: the secret never
becomes a storage key), else its client address. Each request to the API (not /health, the page or its assets) takes one hit
of every limit in RATE_LIMIT (e.g. "120/minute;10/second", moving window) on the routes that cost
upstream calls or credits (see LIMITED_PREFIXES); over it the answer is
429 with Retry-After and a JSON `detail`. Counters live in memory, or in Redis when REDIS_URL is
set, so several processes share them. If Redis cannot be reached the request is let through and
the failure logged: a limiter outage must not become a service outage.

Pure ASGI so that a streamed ZIP passes through untouched (BaseHTTPMiddleware would re-wrap it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings

log = logging.getLogger("app.ratelimit")

_COSTLY = ("/orders/", "/api/create", "/images/")
LIMITED_PREFIXES = _COSTLY + tuple(f"/v1{prefix}" for prefix in _COSTLY)
"""The routes that make upstream calls or spend credits, under /v1/ and as unversioned aliases (the
page calls /v1/). Job status polls and job downloads (a file on disk), /health, the page and the
docs cost no upstream call and are not limited."""


def build_storage(settings: Settings) -> Storage:
    if settings.redis_url is None:
        return MemoryStorage()
    url = settings.redis_url.get_secret_value()
    if not url.startswith("async+"):
        url = "async+" + url
    # under REDIS_KEY_PREFIX like every other key, so one prefix namespaces a deployment
    return RedisStorage(url, implementation="redispy", key_prefix=f"{settings.redis_key_prefix}ratelimit")


def caller_identity(scope: Scope, service_key: bytes | None) -> str:
    """`key:<sha256 prefix>` for a caller presenting a valid X-API-Key, else `ip:<client address>`.

    Only a key that SERVICE_API_KEY accepts names a caller: if any header value did, a client could
    send a fresh random key with every request and never meet the limit.
    """
    if service_key is not None:
        for name, value in scope.get("headers", []):
            if name == b"x-api-key" and hmac.compare_digest(value, service_key):
                return "key:" + hashlib.sha256(value).hexdigest()[:32]
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """429 + Retry-After for a caller over RATE_LIMIT; everything else passes through untouched."""

    def __init__(
        self, app: ASGIApp, *, limits: list[RateLimitItem], storage: Storage, service_key: bytes | None = None
    ) -> None:
        self.app = app
        self.service_key = service_key
        self.items = limits
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        identity = caller_identity(scope, self.service_key)
        try:
            refused = await self._over_limit(identity)
        except Exception as exc:  # storage down: fail open, loudly
            log.error("rate limiter storage failed; request let through: %s", type(exc).__name__)
            refused = None
        if refused is None:
            await self.app(scope, receive, send)
            return
        item, retry_after = refused
        body = json.dumps(
            {"detail": f"Too many requests: the limit is {item} per caller; retry in {retry_after} s"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(retry_after).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _over_limit(self, identity: str) -> tuple[RateLimitItem, int] | None:
        """Take one hit of every limit; the first one refused, with seconds until it frees a slot."""
        for item in self.items:
            if not await self.limiter.hit(item, "caller", identity):
                stats = await self.limiter.get_window_stats(item, "caller", identity)
                return item, max(1, math.ceil(stats.reset_time - time.time()))
        return None


def install_rate_limit(app: FastAPI, settings: Settings) -> None:
    """Add the middleware when RATE_LIMIT is set (a bad value fails at start-up, not per request)."""
    if not settings.rate_limit.strip():
        return
    try:
        items = parse_many(settings.rate_limit)
    except ValueError as exc:
        raise ValueError(f"RATE_LIMIT={settings.rate_limit!r} is not a rate such as '120/minute'") from exc
    key = settings.service_api_key.get_secret_value().encode() if settings.service_api_key else None
    app.add_middleware(RateLimitMiddleware, limits=items, storage=build_storage(settings), service_key=key)
