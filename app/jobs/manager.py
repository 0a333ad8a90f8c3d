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
import logging
import os
import time
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import structlog

from app.engine import Batch
from app.errors import NothingSucceeded, ServiceError
from app.jobs.records import (
    RECORD_RETENTION_SECONDS,
    Job,
    JobExpired,
    JobFailed,
    JobNotFound,
    JobNotReady,
    JobStatus,
    TooManyJobs,
    iso,
)
from app.jobs.store import JobStore
from app.models import BatchOptions, OrderInfo

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger("app.jobs")

MAX_RUNNING_JOBS = 4
"""Jobs producing archives at once; others wait queued."""
MAX_PENDING_JOBS = 200
"""Queued + running jobs this process accepts; beyond that POST answers 503 (a cheap flood guard)."""
CLEANUP_INTERVAL_SECONDS = 60.0
PROGRESS_INTERVAL_SECONDS = 0.5

RESTART_REASON = "interrupted by a service restart; create a new job"
SHUTDOWN_REASON = "service shut down while the job was running"


# -- the manager ------------------------------------------------------------------------------------


class JobManager:
    """Creates jobs, runs them as tasks under a cap, serves their results, and expires them."""

    def __init__(self, services: Services, store: JobStore, cleanup_interval: float) -> None:
        self.services = services
        self.store = store
        self.directory = services.settings.jobs_dir
        self.cleanup_interval = cleanup_interval
        self._slots = asyncio.Semaphore(MAX_RUNNING_JOBS)
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
                f"The job's archive expired at {iso(job.expires_at(self.ttl_seconds))} and was "
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
        if order is None:  # resumed after a restart: the order may have changed (engine.open re-checks it)
            order = await self.services.client.get_order(job.order_id)
            await self.store.update(job.job_id, order_name=order.name, total=len(order.images) + order.unidentified)
        batch = await self.services.engine.open(order, job.options)
        progress = asyncio.create_task(self._track(job.job_id, batch), name=f"job-progress-{job.job_id}")
        try:
            if not await batch.wait_first():
                failures = list(batch.failures)
                return {
                    "status": JobStatus.failed,
                    "error": NothingSucceeded(failures).message,
                    "downloaded": 0,
                    "failed": len(failures),
                    "failures": [f.as_dict() for f in failures],
                }
            size = await self._write(job.job_id, batch)
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
        """Archive bytes to `<id>.zip.part`, written in a thread (the archive's chunks are already
        1 MiB each), then renamed."""
        part = self.directory / f"{job_id}.zip.part"
        size = 0
        file = await asyncio.to_thread(_open_for_write, part)
        try:
            async for chunk in batch.archive():
                size += len(chunk)
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(_finish_file, file)
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


def _finish_file(file: IO[bytes]) -> None:
    """fsync before the rename, so a `.zip` on disk is always a whole archive."""
    with file:
        file.flush()
        os.fsync(file.fileno())
