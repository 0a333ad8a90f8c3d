"""Background jobs: the streaming route's archive, prepared on disk and downloaded later.

Why: a browser tab, a proxy with a short timeout or a flaky mobile link cannot always hold one long
streamed response. A job answers 202 at once, runs the same engine into `<jobs_dir>/<id>.zip`, and
the download is then a plain file (Content-Length, Range, resumable).

The SQLite record (`<data_dir>/jobs.sqlite3`, WAL) is authoritative; the ZIP only exists for a
`complete` job that has not expired. One process owns a data_dir: at start it fails the jobs a
previous process left `running` (their work is lost) and starts the `queued` ones again, so no
record is ever left stuck `running`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiosqlite
import structlog

from app.engine import Batch
from app.errors import NothingSucceeded, ServiceError
from app.models import BatchOptions, OrderInfo

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger("app.jobs")

MAX_RUNNING_JOBS = 4
"""Jobs producing archives at once (`settings.max_running_jobs` wins if it exists); others wait queued."""
MAX_PENDING_JOBS = 200
"""Queued + running jobs this process accepts; beyond that POST answers 503 (a cheap flood guard)."""
CLEANUP_INTERVAL_SECONDS = 60.0
PROGRESS_INTERVAL_SECONDS = 0.5
RECORD_RETENTION_SECONDS = 7 * 24 * 3600
WRITE_BUFFER_BYTES = 1024 * 1024

RESTART_REASON = "interrupted by a service restart; create a new job"
SHUTDOWN_REASON = "service shut down while the job was running"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    complete = "complete"
    failed = "failed"


# -- errors (mapped to JSON by the app's ServiceError handler) -------------------------------------


class JobNotFound(ServiceError):
    status_code = 404
    message = "No such job (unknown id, or its record was deleted after 7 days)"


class JobNotReady(ServiceError):
    status_code = 409


class JobExpired(ServiceError):
    status_code = 410


class JobFailed(ServiceError):
    """A failed job has no archive: 422 with the reason and each image's failure."""

    status_code = 422

    def __init__(self, message: str, failures: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "failures": self.failures}


class TooManyJobs(ServiceError):
    status_code = 503
    message = "Too many jobs are queued or running; try again later"


# -- the record -------------------------------------------------------------------------------------


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Job:
    """One row of the `jobs` table."""

    job_id: str
    order_id: str
    order_name: str | None
    status: JobStatus
    options: BatchOptions
    total: int
    downloaded: int = 0
    failed: int = 0
    error: str | None = None
    failures: tuple[dict[str, str], ...] = ()
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    expired_at: float | None = None
    size: int | None = None

    @property
    def status_url(self) -> str:
        return f"/jobs/{self.job_id}"

    @property
    def download_url(self) -> str:
        return f"/jobs/{self.job_id}/download"

    def expires_at(self, ttl_seconds: float) -> float | None:
        return None if self.finished_at is None else self.finished_at + ttl_seconds

    def is_expired(self, ttl_seconds: float, now: float | None = None) -> bool:
        """Expired once cleaned up, or once past its expiry even if the cleanup has not run yet."""
        expires = self.expires_at(ttl_seconds)
        return self.expired_at is not None or (expires is not None and (now or time.time()) >= expires)

    def view(self, ttl_seconds: float) -> dict[str, Any]:
        """The public JSON of GET /jobs/{id}."""
        return {
            "job_id": self.job_id,
            "order_id": self.order_id,
            "order_name": self.order_name,
            "status": self.status.value,
            "options": self.options.as_dict(),
            "total": self.total,
            "downloaded": self.downloaded,
            "failed": self.failed,
            "error": self.error,
            "failures": list(self.failures),
            "bytes": self.size,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "expires_at": _iso(self.expires_at(ttl_seconds)),
            "expired": self.is_expired(ttl_seconds),
            "status_url": self.status_url,
            "download_url": self.download_url,
        }


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
    size        INTEGER                   -- bytes of the ZIP
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
)


def _to_row(job: Job) -> tuple[Any, ...]:
    values = {f: getattr(job, f) for f in _COLUMNS}
    values["status"] = job.status.value
    values["options"] = json.dumps(job.options.as_dict())
    values["failures"] = json.dumps(list(job.failures))
    return tuple(values[f] for f in _COLUMNS)


def _from_row(row: aiosqlite.Row) -> Job:
    data = dict(zip(_COLUMNS, tuple(row), strict=True))
    data["status"] = JobStatus(data["status"])
    data["options"] = BatchOptions.from_dict(json.loads(data["options"]))
    data["failures"] = tuple(json.loads(data["failures"]))
    return Job(**data)


class JobStore:
    """The `jobs` table: every statement commits, so a crash loses at most the write in flight."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> JobStore:
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(_SCHEMA)
        await db.commit()
        return cls(db)

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

    async def update(self, job_id: str, *, only_if: JobStatus | None = None, **fields: Any) -> bool:
        """Set `fields` on one job (JSON-encoding failures); with `only_if`, only while in that status."""
        if "failures" in fields:
            fields["failures"] = json.dumps(list(fields["failures"]))
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
        cursor = await self._db.execute(sql, params)
        await self._db.commit()
        return cursor.rowcount > 0

    async def fail_all_running(self, reason: str) -> int:
        cursor = await self._db.execute(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE status = ?",
            (JobStatus.failed.value, reason, time.time(), JobStatus.running.value),
        )
        await self._db.commit()
        return cursor.rowcount

    async def delete_finished_before(self, cutoff: float) -> list[str]:
        rows = await self._db.execute_fetchall(
            "SELECT job_id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
        )
        await self._db.execute("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,))
        await self._db.commit()
        return [row[0] for row in rows]


# -- the manager ------------------------------------------------------------------------------------


class JobManager:
    """Creates jobs, runs them as tasks under a cap, serves their results, and expires them."""

    def __init__(self, services: Services, store: JobStore, cleanup_interval: float) -> None:
        self.services = services
        self.store = store
        self.directory = services.settings.jobs_dir
        self.cleanup_interval = cleanup_interval
        limit = int(getattr(services.settings, "max_running_jobs", None) or MAX_RUNNING_JOBS)
        self._slots = asyncio.Semaphore(limit)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()
        self._cleaner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def ttl_seconds(self) -> float:
        """Read on every use, so an operator (or a test) changing the settings object takes effect."""
        return float(self.services.settings.job_ttl_seconds)

    @classmethod
    async def start(cls, services: Services, *, cleanup_interval: float | None = None) -> JobManager:
        """Open the store, recover what a previous process left, and start the cleanup loop."""
        services.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        store = await JobStore.open(services.settings.data_dir / "jobs.sqlite3")
        manager = cls(services, store, CLEANUP_INTERVAL_SECONDS if cleanup_interval is None else cleanup_interval)
        await manager._recover()
        await manager.cleanup()
        manager._cleaner = asyncio.create_task(manager._clean_forever(), name="jobs-cleanup")
        return manager

    async def _recover(self) -> None:
        interrupted = await self.store.fail_all_running(RESTART_REASON)
        for part in self.directory.glob("*.zip.part"):  # nothing runs yet, so every .part is a leftover
            part.unlink(missing_ok=True)
        queued = await self.store.select("status = ?", (JobStatus.queued.value,))
        for job in queued:
            self._spawn(job, order=None)
        if interrupted or queued:
            log.warning("jobs recovered", extra={"interrupted": interrupted, "requeued": len(queued)})

    # -- public API used by the routes ------------------------------------------------------------

    async def create(self, order: OrderInfo, options: BatchOptions) -> Job:
        """Record a queued job for an order already fetched, and start it (it waits for a slot)."""
        if self._closing:
            raise TooManyJobs("The service is shutting down; try again shortly")
        if len(self._tasks) >= MAX_PENDING_JOBS:
            raise TooManyJobs(headers={"Retry-After": "30"})
        self.services.engine.check(order)  # 422 now rather than a failed job later
        job = Job(
            job_id=str(uuid.uuid4()),
            order_id=order.order_id,
            order_name=order.name,
            status=JobStatus.queued,
            options=options,
            total=len(order.images) + order.unidentified,
            created_at=time.time(),
        )
        await self.store.insert(job)
        self._spawn(job, order)
        log.info("job created", extra={"job_id": job.job_id, "order_id": job.order_id, "total": job.total})
        return job

    async def get(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise JobNotFound()
        return job

    async def result(self, job_id: str) -> tuple[Job, Path]:
        """The finished archive of a job, or the error that says why there is none (409/410/422)."""
        job = await self.get(job_id)
        if job.status in (JobStatus.queued, JobStatus.running):
            raise JobNotReady(
                f"Job is {job.status.value} ({job.downloaded + job.failed}/{job.total} images done); "
                f"poll {job.status_url} until its status is 'complete'",
                headers={"Retry-After": "2"},
            )
        if job.status is JobStatus.failed:
            raise JobFailed(f"The job failed: {job.error}", list(job.failures))
        path = self._zip_path(job.job_id)
        if job.is_expired(self.ttl_seconds) or not path.is_file():
            raise JobExpired(
                f"The job's archive expired at {_iso(job.expires_at(self.ttl_seconds))} and was "
                "deleted; create a new job"
            )
        return job, path

    async def aclose(self) -> None:
        """Cancel every job task, fail the ones that were running, close the database."""
        self._closing = True
        tasks = [t for t in (self._cleaner, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id in sorted(self._running):  # queued ones stay queued: the next start runs them
            await self.store.update(
                job_id,
                only_if=JobStatus.running,
                status=JobStatus.failed,
                error=SHUTDOWN_REASON,
                finished_at=time.time(),
            )
            log.warning("job cancelled by shutdown", extra={"job_id": job_id})
        self._running.clear()
        await self.store.close()

    # -- running a job ----------------------------------------------------------------------------

    def _spawn(self, job: Job, order: OrderInfo | None) -> None:
        task = asyncio.create_task(self._run(job, order), name=f"job-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.job_id, None))

    async def _run(self, job: Job, order: OrderInfo | None) -> None:
        structlog.contextvars.bind_contextvars(job_id=job.job_id, order_id=job.order_id)
        async with self._slots:
            self._running.add(job.job_id)
            await self.store.update(job.job_id, status=JobStatus.running, started_at=time.time())
            log.info("job started")
            try:
                outcome = await self._produce(job, order)
            except ServiceError as exc:  # upstream trouble on a resumed job's order fetch, and the like
                outcome = {"status": JobStatus.failed, "error": exc.message}
            except Exception as exc:
                log.exception("job crashed")
                outcome = {"status": JobStatus.failed, "error": f"internal error ({type(exc).__name__})"}
            await self.store.update(job.job_id, finished_at=time.time(), **outcome)
            self._running.discard(job.job_id)
        stats = self.services.stats
        if outcome["status"] is JobStatus.failed:
            stats.record_error("job", str(outcome["error"]))
        log.info(
            "job finished",
            extra={
                "status": outcome["status"].value,
                "downloaded": outcome.get("downloaded"),
                "failed": outcome.get("failed"),
            },
        )

    async def _produce(self, job: Job, order: OrderInfo | None) -> dict[str, Any]:
        """Run the engine into the job's file; the record fields describing how it ended."""
        if order is None:  # resumed after a restart: the order may have changed since
            order = await self.services.client.get_order(job.order_id)
            self.services.engine.check(order)  # 422 now rather than a failed job later
            await self.store.update(job.job_id, order_name=order.name, total=len(order.images) + order.unidentified)
        batch = await self.services.engine.open(order, job.options)
        progress = asyncio.create_task(self._track(job.job_id, batch), name=f"job-progress-{job.job_id}")
        try:
            if not await batch.wait_first():
                failures = list(batch.failures)
                self.services.stats.images_failed += len(failures)
                return {
                    "status": JobStatus.failed,
                    "error": NothingSucceeded(failures).message,
                    "downloaded": 0,
                    "failed": len(failures),
                    "failures": [f.as_dict() for f in failures],
                }
            size = await self._write(job.job_id, batch)
            self.services.stats.images_downloaded += batch.downloaded
            self.services.stats.images_failed += batch.failed
            return {
                "status": JobStatus.complete,
                "error": None,
                "downloaded": batch.downloaded,
                "failed": batch.failed,
                "failures": [f.as_dict() for f in batch.failures],
                "size": size,
            }
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            await batch.aclose()

    async def _track(self, job_id: str, batch: Batch) -> None:
        """Publish the counts while the batch runs, at most every PROGRESS_INTERVAL_SECONDS."""
        written = (0, 0)
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            counts = (batch.downloaded, batch.failed)
            if counts != written:
                await self.store.update(job_id, only_if=JobStatus.running, downloaded=counts[0], failed=counts[1])
                written = counts

    async def _write(self, job_id: str, batch: Batch) -> int:
        """Archive bytes to `<id>.zip.part` (written in a thread, ~1 MiB at a time), then renamed."""
        part = self.directory / f"{job_id}.zip.part"
        size = 0
        file = await asyncio.to_thread(_open_for_write, part)
        try:
            buffer = bytearray()
            async for chunk in batch.archive():
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= WRITE_BUFFER_BYTES:
                    await asyncio.to_thread(file.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(_finish_file, file, bytes(buffer))
            os.replace(part, self._zip_path(job_id))
        except BaseException:
            file.close()
            part.unlink(missing_ok=True)
            raise
        return size

    def _zip_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.zip"

    # -- expiry -----------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Delete the archives of jobs past their TTL (the record stays, so download says 410);
        delete records finished more than RECORD_RETENTION_SECONDS ago."""
        now = time.time()
        due = await self.store.select(
            "finished_at IS NOT NULL AND expired_at IS NULL AND finished_at <= ?", (now - self.ttl_seconds,)
        )
        for job in due:
            self._zip_path(job.job_id).unlink(missing_ok=True)
            await self.store.update(job.job_id, expired_at=now)
        gone = await self.store.delete_finished_before(now - RECORD_RETENTION_SECONDS)
        for job_id in gone:
            self._zip_path(job_id).unlink(missing_ok=True)
        if due or gone:
            log.info("jobs expired", extra={"expired": len(due), "deleted": len(gone)})

    async def _clean_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cleanup_interval)
            try:
                await self.cleanup()
            except Exception:  # a bad pass must not stop the next one
                log.exception("job cleanup failed")


def _open_for_write(path: Path) -> IO[bytes]:
    return open(path, "wb")  # closed by _finish_file, or by _write on error


def _finish_file(file: IO[bytes], tail: bytes) -> None:
    """Last bytes, then fsync before the rename, so a `.zip` on disk is always a whole archive."""
    with file:
        file.write(tail)
        file.flush()
        os.fsync(file.fileno())
