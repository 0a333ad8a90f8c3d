"""The webhook outbox: every callback to send, persisted before the first attempt and after each one.

Why an outbox: a callback must survive a restart (and, with several instances, the death of the one
that was sending it). A delivery is written once, with its final body and its `webhook-id`, then
claimed, attempted and settled; the id never changes, so a receiver can drop duplicates.

Claiming takes a *lease*: the delivery's next-attempt time moves `lease_seconds` ahead and a random
token is recorded. Other dispatchers (processes) skip it until the lease runs out; only the token
holder can settle it. If the holder dies mid-attempt the lease expires and another dispatcher
retries: at-least-once, never two live attempts of one delivery at a time.

Two backends, one contract: SQLite (`<data_dir>/webhooks.sqlite3`, the single-box default) and
Redis (`REDIS_URL`: a sorted set of pending ids by next-attempt time plus one hash per delivery,
claimed and settled by Lua scripts so each step is atomic across processes).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import redis.asyncio as aioredis

from app.core import owner
from app.storage import sqlite

SETTLED_RETENTION_SECONDS = 7 * 24 * 3600
"""Delivered and failed deliveries are kept this long (for GET /jobs/{id} and debugging), then purged."""


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


@dataclass(frozen=True)
class Delivery:
    """One callback message and the history of its attempts."""

    webhook_id: str
    url: str
    body: str
    job_id: str | None
    created_at: float
    next_attempt_at: float
    status: DeliveryStatus = DeliveryStatus.pending
    attempts: int = 0
    last_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    lease: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("lease")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, lease: str | None = None) -> Delivery:
        data = json.loads(text)
        data["status"] = DeliveryStatus(data["status"])
        return cls(**data, lease=lease)

    def view(self) -> dict[str, Any]:
        """What GET /jobs/{id} shows of a delivery (never the body: it is the receiver's)."""
        return {
            "webhook_id": self.webhook_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
        }


class Outbox(Protocol):
    async def add(self, delivery: Delivery) -> bool:
        """Store a new delivery; False (and no change) if its webhook_id is already there."""

    async def claim(self, now: float, limit: int, lease_seconds: float) -> list[Delivery]:
        """Lease up to `limit` pending deliveries due by `now`; each comes back with its lease token."""

    async def settle(self, delivery: Delivery) -> bool:
        """Write an attempt's outcome (status, attempts, next time, errors) if `delivery.lease` still holds."""

    async def get(self, webhook_id: str) -> Delivery | None: ...

    async def for_job(self, job_id: str) -> list[Delivery]: ...

    async def next_due(self) -> float | None:
        """The earliest next-attempt time of a pending delivery (leased ones included), or None."""

    async def purge(self, before: float) -> int:
        """Delete settled deliveries last attempted before `before`."""

    async def close(self) -> None: ...


def new_lease() -> str:
    """A claim's token, naming the process that holds it ("host:pid|random"), so that a process
    opening the outbox can tell a dead holder's lease from a live neighbour's."""
    return f"{owner.PROCESS}|{uuid.uuid4().hex}"


def lease_holder(lease: str) -> str | None:
    return lease.split("|", 1)[0] if "|" in lease else None


# -- SQLite -----------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    webhook_id      TEXT PRIMARY KEY,
    job_id          TEXT,
    status          TEXT NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease           TEXT,
    record          TEXT NOT NULL      -- Delivery.to_json(): the body and the attempt history
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries (job_id);
"""


class SqliteOutbox:
    """The single-box outbox. Claims are one UPDATE ... RETURNING, so two connections (or two
    processes on one DATA_DIR) can never lease the same delivery twice. Opening it releases the
    leases of processes that died mid-attempt, so a crash does not delay the retry by a lease; a
    live neighbour's leases are left alone."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteOutbox:
        return cls(await sqlite.connect(path, _SCHEMA, then=_release_dead_leases))

    async def add(self, delivery: Delivery) -> bool:
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO deliveries (webhook_id, job_id, status, next_attempt_at, record) VALUES (?,?,?,?,?)",
            (delivery.webhook_id, delivery.job_id, delivery.status.value, delivery.next_attempt_at, delivery.to_json()),
        )
        await self._db.commit()
        return cursor.rowcount > 0

    async def claim(self, now: float, limit: int, lease_seconds: float) -> list[Delivery]:
        lease = new_lease()
        rows = await self._db.execute_fetchall(
            "UPDATE deliveries SET lease = ?, next_attempt_at = ? WHERE webhook_id IN ("
            " SELECT webhook_id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?) RETURNING record",
            (lease, now + lease_seconds, now, limit),
        )
        await self._db.commit()
        return [Delivery.from_json(row[0], lease) for row in rows]

    async def settle(self, delivery: Delivery) -> bool:
        cursor = await self._db.execute(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, lease = NULL, record = ?"
            " WHERE webhook_id = ? AND lease = ?",
            (
                delivery.status.value,
                delivery.next_attempt_at,
                delivery.to_json(),
                delivery.webhook_id,
                delivery.lease,
            ),
        )
        await self._db.commit()
        return cursor.rowcount > 0

    async def get(self, webhook_id: str) -> Delivery | None:
        rows = list(
            await self._db.execute_fetchall("SELECT record FROM deliveries WHERE webhook_id = ?", (webhook_id,))
        )
        return Delivery.from_json(rows[0][0]) if rows else None

    async def for_job(self, job_id: str) -> list[Delivery]:
        rows = await self._db.execute_fetchall("SELECT record FROM deliveries WHERE job_id = ?", (job_id,))
        return sorted((Delivery.from_json(r[0]) for r in rows), key=lambda d: d.created_at)

    async def next_due(self) -> float | None:
        rows = list(
            await self._db.execute_fetchall("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def purge(self, before: float) -> int:
        cursor = await self._db.execute(
            "DELETE FROM deliveries WHERE status != 'pending' AND next_attempt_at < ?", (before,)
        )
        await self._db.commit()
        return cursor.rowcount

    async def close(self) -> None:
        await self._db.close()


async def _release_dead_leases(db: aiosqlite.Connection) -> None:
    """Leases held by processes of this host that are gone (or by an earlier process that had this
    pid, since this one holds none yet) are due now; a lease without a holder predates holders."""
    rows = await db.execute_fetchall("SELECT webhook_id, lease FROM deliveries WHERE status = 'pending' AND lease IS NOT NULL")
    dead = [
        webhook_id
        for webhook_id, lease in rows
        if (holder := lease_holder(lease)) is None or holder == owner.PROCESS or owner.gone(holder)
    ]
    for webhook_id in dead:
        await db.execute(
            "UPDATE deliveries SET lease = NULL, next_attempt_at = MIN(next_attempt_at, ?) WHERE webhook_id = ?",
            (time.time(), webhook_id),
        )
    await db.commit()


# -- Redis ------------------------------------------------------------------------------------------

# KEYS: due zset, delivery hash, job set. ARGV: id, next_attempt_at, record, retention
_ADD = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'record', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if KEYS[3] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

# KEYS: due zset. ARGV: now, limit, leased-until, lease token, delivery key prefix
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local record = redis.call('HGET', key, 'record')
  if record then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    redis.call('HSET', key, 'lease', ARGV[4])
    table.insert(out, record)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: due zset, delivery hash. ARGV: id, lease, status, next_attempt_at, record, retention
_SETTLE = """
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'record', ARGV[5])
redis.call('HDEL', KEYS[2], 'lease')
if ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return 1
"""


class RedisOutbox:
    """The shared outbox for several instances: `<prefix>webhooks:due` (zset id -> next attempt),
    `<prefix>webhooks:delivery:<id>` (hash: record, lease), `<prefix>webhooks:job:<job_id>` (set of ids).

    Settled deliveries expire by Redis TTL (SETTLED_RETENTION_SECONDS), so `purge` has nothing to do.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._due = f"{prefix}webhooks:due"
        self._delivery_prefix = f"{prefix}webhooks:delivery:"
        self._job_prefix = f"{prefix}webhooks:job:"
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    def _key(self, webhook_id: str) -> str:
        return self._delivery_prefix + webhook_id

    async def add(self, delivery: Delivery) -> bool:
        job_key = self._job_prefix + delivery.job_id if delivery.job_id else ""
        added = await self._add(
            keys=[self._due, self._key(delivery.webhook_id), job_key],
            args=[delivery.webhook_id, delivery.next_attempt_at, delivery.to_json(), SETTLED_RETENTION_SECONDS],
        )
        return bool(added)

    async def claim(self, now: float, limit: int, lease_seconds: float) -> list[Delivery]:
        lease = new_lease()
        records = await self._claim(
            keys=[self._due], args=[now, limit, now + lease_seconds, lease, self._delivery_prefix]
        )
        return [Delivery.from_json(record, lease) for record in records]

    async def settle(self, delivery: Delivery) -> bool:
        settled = await self._settle(
            keys=[self._due, self._key(delivery.webhook_id)],
            args=[
                delivery.webhook_id,
                delivery.lease or "",
                delivery.status.value,
                delivery.next_attempt_at,
                delivery.to_json(),
                SETTLED_RETENTION_SECONDS,
            ],
        )
        return bool(settled)

    async def get(self, webhook_id: str) -> Delivery | None:
        record = await self._redis.hget(self._key(webhook_id), "record")  # type: ignore[misc]
        return None if record is None else Delivery.from_json(str(record))

    async def for_job(self, job_id: str) -> list[Delivery]:
        ids = await self._redis.smembers(self._job_prefix + job_id)  # type: ignore[misc]
        found = [await self.get(str(webhook_id)) for webhook_id in sorted(ids)]
        return sorted((d for d in found if d is not None), key=lambda d: d.created_at)

    async def next_due(self) -> float | None:
        first = await self._redis.zrange(self._due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def purge(self, before: float) -> int:
        return 0

    async def close(self) -> None:
        """The Redis client belongs to the caller (it is shared with the watch store)."""


def settled(delivery: Delivery, **changes: Any) -> Delivery:
    """A copy of a claimed delivery with an attempt's outcome applied (lease kept, for settle)."""
    return replace(delivery, **changes)
