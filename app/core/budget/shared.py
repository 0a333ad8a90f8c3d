"""The upstream download budget shared by every instance through Redis (REDIS_URL, SHARED_BUDGET).

Each process keeps its own fair limiter (app/core/budget/local.py); this adds one more gate: a download also
needs one of MAX_GLOBAL_DOWNLOADS slots counted in Redis, so N instances and workers together stay
under the upstream's limit rather than N times it.

A slot is a member of one sorted set, scored by its lease expiry (Redis server time, so the
instances' clocks do not matter). Taking one is one Lua script: drop expired members, then add ours
if fewer than the capacity remain. A holder renews all its slots every third of the lease; a crashed
instance stops renewing and its slots lapse within SLOT_LEASE_SECONDS. Waiters poll (20 ms doubling
to 200 ms): simple and bounded, at the cost of no fairness between instances (each instance's local
limiter stays fair between its own orders).

If Redis cannot be reached, a download proceeds under the local limit alone (logged): an outage of the
coordination store must not stop the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.redis_client import connect

log = logging.getLogger("app.shared_budget")

SLOT_LEASE_SECONDS = 30.0
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.2

_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
  return 1
end
return 0
"""

_RENEW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', t + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000))
return 1
"""


class SharedBudget:
    """At most `capacity` slots held at once across every process using the same Redis key."""

    def __init__(self, redis: aioredis.Redis, key: str, capacity: int, lease: float = SLOT_LEASE_SECONDS) -> None:
        self._redis = redis
        self.key = key
        self.capacity = capacity
        self.lease = lease
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, prefix: str, capacity: int) -> SharedBudget:
        return cls(connect(url, retries=1), f"{prefix}budget:slots", capacity)  # one reconnect, then fail open

    @property
    def held(self) -> int:
        """Slots this process holds now."""
        return len(self._held)

    async def acquire(self) -> str | None:
        """Wait for a slot; its token, or None when Redis is unreachable (then no shared slot is held)."""
        token = uuid.uuid4().hex
        delay = POLL_FIRST_SECONDS
        while True:
            try:
                taken = await self._take(keys=[self.key], args=[self.capacity, self.lease, token])
            except RedisError as exc:
                log.warning("shared budget unavailable; using the local limit only", extra={"error": str(exc)})
                return None
            if taken:
                self._held.add(token)
                self._ensure_renewer()
                return token
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)

    async def release(self, token: str | None) -> None:
        if token is None:
            return
        self._held.discard(token)
        try:
            await self._redis.zrem(self.key, token)
        except RedisError:
            log.warning("could not release a shared slot; it lapses with its lease")

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        token = await self.acquire()
        try:
            yield
        finally:
            await asyncio.shield(self.release(token))  # a cancelled download must still give its slot back

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name="shared-budget-renew")

    async def _renew_forever(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease / 3)
            held = list(self._held)
            if not held:
                break
            try:
                await self._renew(keys=[self.key], args=[self.lease, *held])
            except RedisError:
                log.warning("could not renew shared slots")

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self._held:
            with contextlib.suppress(RedisError):
                await self._redis.zrem(self.key, *self._held)
        self._held.clear()
        await self._redis.aclose()
