"""Single-flight: identical work (same order, options and order version) started together runs once.

The first caller to `claim` a key leads: it does the upstream work and `land`s when its result is
published. Everyone else gets None from `claim`, the leader's tag (say, its job id) from `leader`,
and `wait`s until the leader lands; then it reads the leader's result instead of fetching again
(or, if the leader produced nothing reusable, claims the key itself).

In one process the claims are a dict; the processes of one box (several on one DATA_DIR) share
them as file locks (app/archives/box_claims.py); with REDIS_URL they are Redis keys (`SET NX` with a lease
renewed every third of FLIGHT_LEASE_SECONDS, deleted on landing only by their owner), so instances
and workers share them. A leader that crashes stops renewing and its claim lapses: followers then
take over rather than waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.archives.box_claims import BoxClaims
from app.core.redis_client import connect

log = logging.getLogger("app.single_flight")

FLIGHT_LEASE_SECONDS = 15.0
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if (not v) or (ARGV[3] == '1' and string.sub(v, 1, string.len(ARGV[4]) + 1) == ARGV[4] .. '|') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_LAND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class Flight:
    """A claim this process leads; `land()` once the result is where followers will look."""

    def __init__(self, flights: Flights, key: str, value: str) -> None:
        self._flights = flights
        self.key = key
        self.value = value
        self._renewer: asyncio.Task[None] | None = None
        self.landed = False

    async def land(self) -> None:
        if self.landed:
            return
        self.landed = True
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self._flights._land(self)


class Flights:
    def __init__(
        self,
        redis: aioredis.Redis | None,
        prefix: str,
        lease: float = FLIGHT_LEASE_SECONDS,
        box: BoxClaims | None = None,
    ) -> None:
        self._redis = redis
        self._box = box if redis is None else None
        self._prefix = f"{prefix}flight:"
        self.lease = lease
        self._local: dict[str, tuple[str, asyncio.Event]] = {}
        self._claim_script = redis.register_script(_CLAIM) if redis is not None else None
        self._land_script = redis.register_script(_LAND) if redis is not None else None
        self._renew_script = redis.register_script(_RENEW) if redis is not None else None

    @property
    def leading(self) -> int:
        """Claims this process holds now (each must land: a claim left behind stalls every follower)."""
        return len(self._local)

    @classmethod
    def from_url(cls, url: str | None, prefix: str, box_dir: Path | None = None) -> Flights:
        """Redis claims with `url`; else claims shared through `box_dir` by the processes of this box."""
        if url:
            return cls(connect(url), prefix)
        return cls(None, prefix, box=BoxClaims(box_dir) if box_dir is not None else None)

    async def aclose(self) -> None:
        if self._box is not None:
            self._box.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def claim(self, key: str, tag: str, *, succeed: bool = False) -> Flight | None:
        """Lead `key` (a Flight), or None when someone leads it already. `tag` names the leader.

        `succeed`: a claim held under this same tag is taken over (a job's next attempt replaces its
        dead previous one rather than waiting for that one's lease to lapse)."""
        value = f"{tag}|{uuid.uuid4().hex}"
        if key in self._local and not (succeed and self._local[key][0].startswith(f"{tag}|")):
            return None
        if self._claim_script is not None:
            try:
                args: list[str | int] = [value, int(self.lease * 1000), "1" if succeed else "0", tag]
                taken = await self._claim_script(keys=[self._prefix + key], args=args)
            except RedisError as exc:  # no coordination: do the work (correct, only not deduplicated)
                log.warning("single-flight unavailable", extra={"error": str(exc)})
                taken = True
            if not taken:
                return None
        elif self._box is not None and not self._box.claim(key, value):
            return None
        previous = self._local.get(key)
        if previous is not None and not (succeed and previous[0].startswith(f"{tag}|")):
            await self._land(Flight(self, key, value))  # another task here claimed it while we awaited Redis
            return None
        if previous is not None:
            previous[1].set()
        self._local[key] = (value, asyncio.Event())
        flight = Flight(self, key, value)
        if self._redis is not None:
            flight._renewer = asyncio.create_task(self._renew_forever(flight), name=f"flight-renew-{key[:8]}")
        return flight

    async def leader(self, key: str) -> str | None:
        """The tag of whoever leads `key` now, if anyone."""
        if key in self._local:
            return self._local[key][0].split("|", 1)[0]
        if self._box is not None:
            held = self._box.holder(key)
            return None if held is None else held.split("|", 1)[0]
        if self._redis is None:
            return None
        with contextlib.suppress(RedisError):
            value = await self._redis.get(self._prefix + key)
            return None if value is None else str(value).split("|", 1)[0]
        return None

    async def wait(self, key: str) -> None:
        """Return once nobody leads `key` (bound it with `asyncio.timeout`)."""
        delay = POLL_FIRST_SECONDS
        while True:
            local = self._local.get(key)
            if local is not None:
                await local[1].wait()
                continue
            if self._box is not None:
                if self._box.holder(key) is None:
                    return
            elif self._redis is None:
                return
            else:
                try:
                    if not await self._redis.exists(self._prefix + key):
                        return
                except RedisError:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_SECONDS)

    async def _land(self, flight: Flight) -> None:
        local = self._local.get(flight.key)
        if local is not None and local[0] == flight.value:
            del self._local[flight.key]
            local[1].set()
        if self._box is not None:
            self._box.release(flight.key, flight.value)
        if self._land_script is not None:
            with contextlib.suppress(RedisError):
                await self._land_script(keys=[self._prefix + flight.key], args=[flight.value])

    async def _renew_forever(self, flight: Flight) -> None:
        assert self._renew_script is not None
        while True:
            await asyncio.sleep(self.lease / 3)
            with contextlib.suppress(RedisError):
                await self._renew_script(keys=[self._prefix + flight.key], args=[flight.value, int(self.lease * 1000)])
