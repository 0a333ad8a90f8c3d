"""Inbound rate limiting per caller (the `limits` library), as pure ASGI middleware.

A caller is its X-API-Key when it presents one SERVICE_API_KEY accepts (hashed: the secret never
becomes a storage key), else its client address. A request to a route that costs upstream calls or
credits (LIMITED_PREFIXES and /ready, under /v1/ and unversioned alike) takes one hit of every
limit in RATE_LIMIT (e.g. "120/minute;10/second", moving window). Besides, on every route a
request that presents a credential and is refused (401/403) takes one hit of a second, separate
count with the same limits, so guessing a token or key is as slow as the limit, while valid status
polls stay free. Over either, the answer is 429 with Retry-After and a JSON `detail`. Counters live in memory, or in Redis when REDIS_URL is
set, so several processes share them. If Redis cannot be reached the request is let through and
the failure logged: a limiter outage must not become a service outage.

Pure ASGI so that a streamed ZIP passes through untouched (BaseHTTPMiddleware would re-wrap it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.intake import answer, api_path
from app.config import Settings

log = logging.getLogger("app.ratelimit")

LIMITED_PREFIXES = ("/orders/", "/api/create", "/images/")
"""The routes that make upstream calls or spend credits, matched after `api_path` drops the /v1
prefix (the page calls /v1/), so both spellings share a bucket; /ready too (LIMITED_PATHS: each
call asks Autoenhance with the operator's key). Job status polls and job downloads (a file on
disk), /health, the page and the docs cost no upstream call and are not limited, except for
refused credentials (see above)."""
LIMITED_PATHS = frozenset({"/ready"})
CREDENTIAL_HEADERS = frozenset({b"x-api-key", b"x-admin-token", b"authorization"})


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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = api_path(scope)
        limited = path.startswith(LIMITED_PREFIXES) or path in LIMITED_PATHS
        guessing = any(name in CREDENTIAL_HEADERS for name, _ in scope.get("headers", []))
        if not (limited or guessing):
            await self.app(scope, receive, send)
            return
        identity = caller_identity(scope, self.service_key)
        try:
            refused = await self._over_limit(identity, limited=limited, guessing=guessing)
        except Exception as exc:  # storage down: fail open, loudly
            log.error("rate limiter storage failed; request let through: %s", type(exc).__name__)
            refused = None
        if refused is not None:
            await self._refuse(send, *refused)
            return
        if not guessing:
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                try:
                    for item in self.items:
                        await self.limiter.hit(item, "refused", identity)
                except Exception as exc:
                    log.error("rate limiter storage failed; refusal not counted: %s", type(exc).__name__)
            await send(message)

        await self.app(scope, receive, counting_send)

    @staticmethod
    async def _refuse(send: Send, item: RateLimitItem, retry_after: int) -> None:
        detail = f"Too many requests: the limit is {item} per caller; retry in {retry_after} s"
        await answer(send, 429, detail, {"Retry-After": str(retry_after)})

    async def _over_limit(self, identity: str, *, limited: bool, guessing: bool) -> tuple[RateLimitItem, int] | None:
        """Take one hit of every limit (limited routes) and look at the refused-credential count
        (requests with a credential); the first limit exceeded, with seconds until it frees a slot."""
        for item in self.items:
            if guessing and not await self.limiter.test(item, "refused", identity):
                return item, await self._retry_after(item, "refused", identity)
        for item in self.items:
            if limited and not await self.limiter.hit(item, "caller", identity):
                return item, await self._retry_after(item, "caller", identity)
        return None

    async def _retry_after(self, item: RateLimitItem, namespace: str, identity: str) -> int:
        stats = await self.limiter.get_window_stats(item, namespace, identity)
        return max(1, math.ceil(stats.reset_time - time.time()))


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
