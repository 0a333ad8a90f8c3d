"""The authoritative job records in Redis, for several API instances and workers (REDIS_URL set).

Same contract (app/jobs/store.py `JobStore`) as the SQLite store. Keys (all under REDIS_KEY_PREFIX):
- `jobs:job:<id>`: the record as JSON;
- `jobs:status:<status>`: set of the ids in that status (the sweeper reads `running`); records of an
  earlier release may still say `complete` (and sit in `jobs:status:complete`): they read as `completed`;
- `jobs:finished`: zset of finished ids by finish time (expiry and deletion).

Conditional updates (`only_if` status, `only_attempt`) are optimistic transactions (WATCH/MULTI), so
two processes racing for one job (a worker finishing while a sweeper declares it dead) cannot both win.

The client retries connection errors with backoff (app/core/redis_client.py). A connection lost
during EXEC leaves it unknown whether the transaction ran; the update is then read again, and a
record that already holds every value written (a claim's own start time, say) counts as our write.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from app.core.models import BatchOptions
from app.core.redis_client import connect
from app.jobs.records import LEGACY_STATUSES, Job, JobStatus

_FIELDS = tuple(Job.__dataclass_fields__)


def _encode(job: Job) -> str:
    data = {name: getattr(job, name) for name in _FIELDS}
    data["status"] = job.status.value
    data["options"] = job.options.as_dict()
    data["failures"] = list(job.failures)
    data["shares"] = list(job.shares)
    return json.dumps(data)


def _decode(raw: str | bytes) -> Job:
    data = json.loads(raw)
    data = {name: value for name, value in data.items() if name in _FIELDS}
    data["status"] = JobStatus(data["status"])
    data["options"] = BatchOptions.from_dict(data["options"])
    data["failures"] = tuple(data["failures"])
    data["shares"] = tuple(data.get("shares") or ())
    return Job(**data)


def _stored(name: str, value: Any) -> Any:
    """A field's value as the JSON record holds it."""
    if name == "status":
        return JobStatus(value).value
    if name in ("failures", "shares"):
        return json.loads(json.dumps(list(value)))
    if name == "options" and isinstance(value, BatchOptions):
        return value.as_dict()
    return value


class RedisJobStore:
    """Job records shared by every process that uses the same Redis and key prefix."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "jobs:"

    @classmethod
    async def open(cls, url: str, prefix: str) -> RedisJobStore:
        """Connect and check that Redis answers (raises if not)."""
        store = cls.connect(url, prefix)
        await store._redis.ping()
        return store

    @classmethod
    def connect(cls, url: str, prefix: str) -> RedisJobStore:
        """Connect lazily: the service starts even while Redis is down (the job manager retries)."""
        return cls(connect(url), prefix)

    async def close(self) -> None:
        await self._redis.aclose()

    def _job(self, job_id: str) -> str:
        return f"{self._prefix}job:{job_id}"

    def _status(self, status: JobStatus | str) -> str:
        return f"{self._prefix}status:{JobStatus(status).value}"

    def _status_keys(self, status: JobStatus) -> list[str]:
        """The set of a status, and the sets of the earlier words for it (records not rewritten since)."""
        return [self._status(status)] + [
            f"{self._prefix}status:{old}" for old, new in LEGACY_STATUSES.items() if new is status
        ]

    @property
    def _finished(self) -> str:
        return f"{self._prefix}finished"

    async def insert(self, job: Job) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._job(job.job_id), _encode(job), nx=True)
            pipe.sadd(self._status(job.status), job.job_id)
            created, _ = await pipe.execute()
        if not created and await self._redis.get(self._job(job.job_id)) != _encode(job):  # equal: our EXEC ran
            raise ValueError(f"job {job.job_id} already exists")

    async def get(self, job_id: str) -> Job | None:
        raw = await self._redis.get(self._job(job_id))
        return None if raw is None else _decode(raw)

    async def _many(self, ids: list[str]) -> list[Job]:
        if not ids:
            return []
        raws = await self._redis.mget([self._job(i) for i in ids])
        jobs = [_decode(raw) for raw in raws if raw is not None]
        return sorted(jobs, key=lambda job: job.created_at)

    async def count(self, status: JobStatus) -> int:
        return sum([int(await self._redis.scard(key)) for key in self._status_keys(status)])

    async def count_by_status(self) -> dict[str, int]:
        """Job records per status (the jobs gauge of /metrics): one SCARD per status."""
        return {status.value: await self.count(status) for status in JobStatus}

    async def with_status(self, status: JobStatus) -> list[Job]:
        members = await self._redis.sunion(self._status_keys(status))
        return await self._many(sorted(str(m) for m in members))

    async def due_for_expiry(self, cutoff: float) -> list[Job]:
        ids = [str(i) for i in await self._redis.zrangebyscore(self._finished, "-inf", cutoff)]
        return [job for job in await self._many(ids) if job.expired_at is None]

    async def update(
        self, job_id: str, *, only_if: JobStatus | None = None, only_attempt: int | None = None, **fields: Any
    ) -> bool:
        """Set `fields` on one job; with `only_if`/`only_attempt`, only while it is in that status/run."""
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)}")
        key = self._job(job_id)
        wanted = {name: _stored(name, value) for name, value in fields.items()}
        again = False
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        return False
                    data = json.loads(raw)
                    if again and wanted and all(data.get(name) == value for name, value in wanted.items()):
                        return True  # our EXEC ran before its connection dropped
                    if only_if is not None and JobStatus(data["status"]) is not only_if:
                        return False
                    if only_attempt is not None and data.get("attempt", 1) != only_attempt:
                        return False
                    before = data["status"]
                    data.update(wanted)
                    pipe.multi()
                    pipe.set(key, json.dumps(data))
                    if data["status"] != before:
                        pipe.srem(f"{self._prefix}status:{before}", job_id)  # as stored: maybe an earlier word
                        pipe.sadd(self._status(data["status"]), job_id)
                    if fields.get("finished_at") is not None:
                        pipe.zadd(self._finished, {job_id: fields["finished_at"]})
                    await pipe.execute()
                    return True
                except WatchError:
                    again = True  # someone else wrote the record, or the connection dropped: re-read
                    continue

    async def delete_finished_before(self, cutoff: float) -> list[str]:
        ids = [str(i) for i in await self._redis.zrangebyscore(self._finished, "-inf", f"({cutoff}")]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*[self._job(i) for i in ids])
            pipe.zrem(self._finished, *ids)
            for status in JobStatus:
                for key in self._status_keys(status):
                    pipe.srem(key, *ids)
            await pipe.execute()
        return ids
