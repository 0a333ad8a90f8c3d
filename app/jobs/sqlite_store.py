"""The authoritative job records on one box, in SQLite (`<data_dir>/jobs.sqlite3`, WAL, every statement committed)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from app.core.models import BatchOptions
from app.jobs.records import LEGACY_STATUSES, Job, JobStatus
from app.storage import sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    order_name  TEXT,
    status      TEXT NOT NULL,
    options     TEXT NOT NULL,            -- JSON of BatchOptions.as_dict()
    total       INTEGER NOT NULL,
    downloaded  INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    failures    TEXT NOT NULL DEFAULT '[]', -- JSON list of ImageFailure.as_dict()
    created_at  REAL NOT NULL,            -- epoch seconds, UTC
    started_at  REAL,
    finished_at REAL,
    expired_at  REAL,                     -- set when the cleanup deleted the result file
    size        INTEGER,                  -- bytes of the ZIP
    callback_url    TEXT,                 -- webhook target (app/webhooks); added by _MIGRATIONS
    public_base_url TEXT,                 -- base of the absolute links in that webhook
    attempt     INTEGER NOT NULL DEFAULT 1, -- which run of the job (a dead worker's job runs again)
    lease_until REAL,                     -- a running job's heartbeat deadline
    runner      TEXT,                     -- host:pid of the process that runs or ran it
    wait_seconds REAL,                    -- wait=true: poll the order up to this long first
    shares      TEXT NOT NULL DEFAULT '[]', -- JSON list of the job's share links (app/core/delivery/sharing.py)
    handed_back INTEGER NOT NULL DEFAULT 0  -- runs handed back by a departing worker (not failures)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
"""
_COLUMNS = (
    "job_id",
    "order_id",
    "order_name",
    "status",
    "options",
    "total",
    "downloaded",
    "failed",
    "error",
    "failures",
    "created_at",
    "started_at",
    "finished_at",
    "expired_at",
    "size",
    "callback_url",
    "public_base_url",
    "attempt",
    "lease_until",
    "runner",
    "wait_seconds",
    "shares",
    "handed_back",
)
_MIGRATIONS = (
    # (column, DDL) added after the first release: applied to databases created before them
    ("callback_url", "ALTER TABLE jobs ADD COLUMN callback_url TEXT"),
    ("public_base_url", "ALTER TABLE jobs ADD COLUMN public_base_url TEXT"),
    ("attempt", "ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1"),
    ("lease_until", "ALTER TABLE jobs ADD COLUMN lease_until REAL"),
    ("runner", "ALTER TABLE jobs ADD COLUMN runner TEXT"),
    ("wait_seconds", "ALTER TABLE jobs ADD COLUMN wait_seconds REAL"),
    ("shares", "ALTER TABLE jobs ADD COLUMN shares TEXT NOT NULL DEFAULT '[]'"),
    ("handed_back", "ALTER TABLE jobs ADD COLUMN handed_back INTEGER NOT NULL DEFAULT 0"),
)


def _to_row(job: Job) -> tuple[Any, ...]:
    values = {f: getattr(job, f) for f in _COLUMNS}
    values["status"] = job.status.value
    values["options"] = json.dumps(job.options.as_dict())
    values["failures"] = json.dumps(list(job.failures))
    values["shares"] = json.dumps(list(job.shares))
    return tuple(values[f] for f in _COLUMNS)


def _from_row(row: aiosqlite.Row) -> Job:
    data = dict(zip(_COLUMNS, tuple(row), strict=True))
    data["status"] = JobStatus(data["status"])
    data["options"] = BatchOptions.from_dict(json.loads(data["options"]))
    data["failures"] = tuple(json.loads(data["failures"]))
    data["shares"] = tuple(json.loads(data["shares"] or "[]"))
    return Job(**data)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Add the columns a database created by an older release lacks (SQLite has no ADD COLUMN IF NOT EXISTS),
    and give its rows today's status words (`complete` is `completed`), so queries by status find them."""
    present = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(jobs)")}
    for column, ddl in _MIGRATIONS:
        if column not in present:
            await db.execute(ddl)
    for old, status in LEGACY_STATUSES.items():
        await db.execute("UPDATE jobs SET status = ? WHERE status = ?", (status.value, old))
    await db.commit()


class SqliteJobStore:
    """The `jobs` table (the default store; `app.jobs.redis_store.RedisJobStore` is the shared one): every
    statement commits, so a crash loses at most the write in flight."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteJobStore:
        return cls(await sqlite.connect(path, _SCHEMA, then=_migrate))

    async def close(self) -> None:
        await self._db.close()

    async def insert(self, job: Job) -> None:
        marks = ", ".join("?" for _ in _COLUMNS)
        await self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})", _to_row(job))  # noqa: S608
        await self._db.commit()

    async def get(self, job_id: str) -> Job | None:
        async with self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE job_id = ?", (job_id,)) as cur:  # noqa: S608
            row = await cur.fetchone()
        return None if row is None else _from_row(row)

    async def select(self, where: str, params: Iterable[Any] = ()) -> list[Job]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE {where} ORDER BY created_at"  # noqa: S608
        rows = await self._db.execute_fetchall(sql, tuple(params))
        return [_from_row(row) for row in rows]

    async def with_status(self, status: JobStatus) -> list[Job]:
        return await self.select("status = ?", (status.value,))

    async def due_for_expiry(self, cutoff: float) -> list[Job]:
        """Finished jobs whose result has not been deleted yet and that finished at or before `cutoff`."""
        return await self.select("finished_at IS NOT NULL AND expired_at IS NULL AND finished_at <= ?", (cutoff,))

    async def update(
        self, job_id: str, *, only_if: JobStatus | None = None, only_attempt: int | None = None, **fields: Any
    ) -> bool:
        """Set `fields` on one job (JSON-encoding failures); with `only_if`, only while in that status,
        with `only_attempt`, only while that run owns it (a presumed-dead runner cannot overwrite)."""
        for listed in ("failures", "shares"):
            if listed in fields:
                fields[listed] = json.dumps(list(fields[listed]))
        if isinstance(fields.get("status"), JobStatus):
            fields["status"] = fields["status"].value
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)}")
        sql = f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in fields)} WHERE job_id = ?"  # noqa: S608
        params: list[Any] = [*fields.values(), job_id]
        if only_if is not None:
            sql += " AND status = ?"
            params.append(only_if.value)
        if only_attempt is not None:
            sql += " AND attempt = ?"
            params.append(only_attempt)
        cursor = await self._db.execute(sql, params)
        await self._db.commit()
        return cursor.rowcount > 0

    async def count(self, status: JobStatus) -> int:
        rows = list(await self._db.execute_fetchall("SELECT COUNT(*) FROM jobs WHERE status = ?", (status.value,)))
        return int(rows[0][0])

    async def count_by_status(self) -> dict[str, int]:
        """Job records per status (the jobs gauge of /metrics; the status index makes it cheap)."""
        rows = await self._db.execute_fetchall("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {str(row[0]): int(row[1]) for row in rows}

    async def delete_finished_before(self, cutoff: float) -> list[str]:
        rows = await self._db.execute_fetchall(
            "SELECT job_id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
        )
        await self._db.execute("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,))
        await self._db.commit()
        return [row[0] for row in rows]
