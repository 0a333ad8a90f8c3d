"""Order watches: "when Autoenhance says this order is done, start its job (and call me back)".

A watch is `watching` until taken. `take(order_id)` is atomic (one UPDATE ... RETURNING in SQLite,
one Lua script in Redis), so an order finishing is turned into jobs once even when Autoenhance's
webhook and the watch's own "already done?" check race, or hit two instances at once.
Watches nobody triggers are forgotten after WATCH_TTL_SECONDS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import redis.asyncio as aioredis

from app.jobs.records import iso
from app.storage import sqlite

WATCH_TTL_SECONDS = 7 * 24 * 3600
STARTING_GRACE_SECONDS = 120.0
"""A watch still `starting` this long after it was taken was taken by a process that died: retry it."""


class WatchStatus(StrEnum):
    watching = "watching"
    starting = "starting"
    started = "started"
    failed = "failed"
    expired = "expired"


@dataclass(frozen=True)
class Watch:
    watch_id: str
    order_id: str
    options: dict[str, Any]
    callback_url: str | None
    public_base_url: str | None
    created_at: float
    status: WatchStatus = WatchStatus.watching
    job_id: str | None = None
    error: str | None = None
    updated_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Watch:
        data = json.loads(text)
        data["status"] = WatchStatus(data["status"])
        return cls(**data)

    def view(self) -> dict[str, Any]:
        """The public JSON of POST /orders/{id}/watch and GET /watches/{id}."""
        return {
            "watch_id": self.watch_id,
            "order_id": self.order_id,
            "status": self.status.value,
            "options": self.options,
            "callback_url": self.callback_url,
            "job_id": self.job_id,
            "job_status_url": f"/jobs/{self.job_id}" if self.job_id else None,
            "error": self.error,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.created_at + WATCH_TTL_SECONDS) if self.status is WatchStatus.watching else None,
            "status_url": f"/watches/{self.watch_id}",
        }


def changed(watch: Watch, **changes: Any) -> Watch:
    return replace(watch, **changes)


class WatchStore(Protocol):
    async def add(self, watch: Watch) -> None: ...

    async def get(self, watch_id: str) -> Watch | None: ...

    async def take(self, order_id: str, now: float) -> list[Watch]:
        """Every `watching` watch of the order, now `starting`; a second call gets none of them."""

    async def save(self, watch: Watch) -> None: ...

    async def requeue_stale(self, before: float) -> list[str]:
        """Put watches taken before `before` and still `starting` back to `watching`; their order ids."""

    async def expire(self, before: float) -> int: ...

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    watch_id   TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at REAL NOT NULL,
    record     TEXT NOT NULL      -- Watch.to_json()
);
CREATE INDEX IF NOT EXISTS watches_order ON watches (order_id, status);
"""


class SqliteWatches:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteWatches:
        db = await sqlite.connect(path, _SCHEMA)
        await db.commit()
        return cls(db)

    async def add(self, watch: Watch) -> None:
        await self._db.execute(
            "INSERT INTO watches (watch_id, order_id, status, created_at, record) VALUES (?,?,?,?,?)",
            (watch.watch_id, watch.order_id, watch.status.value, watch.created_at, watch.to_json()),
        )
        await self._db.commit()

    async def get(self, watch_id: str) -> Watch | None:
        rows = list(await self._db.execute_fetchall("SELECT record FROM watches WHERE watch_id = ?", (watch_id,)))
        return Watch.from_json(rows[0][0]) if rows else None

    async def take(self, order_id: str, now: float) -> list[Watch]:
        rows = await self._db.execute_fetchall(
            "UPDATE watches SET status = 'starting' WHERE order_id = ? AND status = 'watching' RETURNING record",
            (order_id,),
        )
        await self._db.commit()
        taken = [changed(Watch.from_json(r[0]), status=WatchStatus.starting, updated_at=now) for r in rows]
        for watch in taken:
            await self.save(watch)
        return taken

    async def save(self, watch: Watch) -> None:
        await self._db.execute(
            "UPDATE watches SET status = ?, record = ? WHERE watch_id = ?",
            (watch.status.value, watch.to_json(), watch.watch_id),
        )
        await self._db.commit()

    async def requeue_stale(self, before: float) -> list[str]:
        rows = await self._db.execute_fetchall(
            "UPDATE watches SET status = 'watching' WHERE status = 'starting'"
            " AND json_extract(record, '$.updated_at') < ? RETURNING record",
            (before,),
        )
        await self._db.commit()
        watches = [changed(Watch.from_json(r[0]), status=WatchStatus.watching) for r in rows]
        for watch in watches:
            await self.save(watch)
        return sorted({w.order_id for w in watches})

    async def expire(self, before: float) -> int:
        rows = await self._db.execute_fetchall(
            "SELECT record FROM watches WHERE status = 'watching' AND created_at < ?", (before,)
        )
        for row in rows:
            await self.save(changed(Watch.from_json(row[0]), status=WatchStatus.expired))
        return len(list(rows))

    async def close(self) -> None:
        await self._db.close()


# KEYS: the order's set of watching ids, the starting zset. ARGV: watch key prefix, now. Returns the records taken.
_TAKE = """
local ids = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('GET', ARGV[1] .. id)
  if record then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    table.insert(out, record)
  end
end
return out
"""

# KEYS: the starting zset. ARGV: cutoff, watch key prefix. Removes and returns the stale records.
_STALE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local record = redis.call('GET', ARGV[2] .. id)
  if record then table.insert(out, record) end
end
return out
"""


class RedisWatches:
    """`<prefix>watches:watch:<id>` (the record, with a TTL), `<prefix>watches:order:<order_id>`
    (set of ids still watching: membership *is* the `watching` state) and `<prefix>watches:starting`
    (zset of taken ids by take time, until they are saved started or failed)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._watch_prefix = f"{prefix}watches:watch:"
        self._order_prefix = f"{prefix}watches:order:"
        self._starting = f"{prefix}watches:starting"
        self._take = client.register_script(_TAKE)
        self._stale = client.register_script(_STALE)

    async def add(self, watch: Watch) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._watch_prefix + watch.watch_id, watch.to_json(), ex=WATCH_TTL_SECONDS)
            pipe.sadd(self._order_prefix + watch.order_id, watch.watch_id)
            pipe.expire(self._order_prefix + watch.order_id, WATCH_TTL_SECONDS)
            await pipe.execute()

    async def get(self, watch_id: str) -> Watch | None:
        record = await self._redis.get(self._watch_prefix + watch_id)
        return None if record is None else Watch.from_json(str(record))

    async def take(self, order_id: str, now: float) -> list[Watch]:
        records = await self._take(keys=[self._order_prefix + order_id, self._starting], args=[self._watch_prefix, now])
        taken = [changed(Watch.from_json(r), status=WatchStatus.starting, updated_at=now) for r in records]
        for watch in taken:
            await self.save(watch)
        return taken

    async def save(self, watch: Watch) -> None:
        await self._redis.set(self._watch_prefix + watch.watch_id, watch.to_json(), ex=WATCH_TTL_SECONDS)
        if watch.status is not WatchStatus.starting:
            await self._redis.zrem(self._starting, watch.watch_id)

    async def requeue_stale(self, before: float) -> list[str]:
        records = await self._stale(keys=[self._starting], args=[before, self._watch_prefix])
        watches = [changed(Watch.from_json(r), status=WatchStatus.watching) for r in records]
        for watch in watches:
            await self.add(watch)
        return sorted({w.order_id for w in watches})

    async def expire(self, before: float) -> int:
        return 0  # Redis TTLs forget them

    async def close(self) -> None:
        """The Redis client belongs to the caller."""
