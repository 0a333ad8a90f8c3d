"""Background jobs: the streaming route's archive, prepared on disk and downloaded later.

Why: a browser tab, a proxy with a short timeout or a flaky mobile link cannot always hold one long
streamed response. A job answers 202 at once, runs the same engine into `<jobs_dir>/<id>.zip`, and
the download is then a plain file (Content-Length, Range, resumable).

The record in the job store is authoritative: SQLite (`<data_dir>/jobs.sqlite3`, WAL) by default,
Redis with REDIS_URL (app/jobs/redis_store.py). The ZIP (app/jobs/results.py: disk, or S3) only
exists for a `complete` job that has not expired. Jobs are run through a taskiq queue
(app/jobs/queue.py): in this process by default, by any consumer (`python -m app.worker`, API
instances) with Redis.

No record is ever left stuck `running`:
- single box (SQLite): one process owns a data_dir; at start it fails the jobs a previous process
  left `running` (their work is lost) and starts the `queued` ones again;
- shared (Redis): a runner renews its job's lease every JOB_LEASE_SECONDS/3; every manager sweeps
  `running` jobs whose lease lapsed (the runner died or hung) and runs them again as attempt + 1, up
  to JOB_MAX_ATTEMPTS, then fails them with the reason. Every write of a runner is conditional on
  its attempt, so a runner presumed dead that wakes up cannot overwrite its successor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import structlog
from redis.exceptions import RedisError

from app.archives.cache import ArchiveCache
from app.archives.flights import Flight
from app.core.engine import Batch
from app.core.models import BatchOptions, OrderInfo
from app.core.wait import WaitOptions, wait_until_ready
from app.errors import NothingSucceeded, ServiceError
from app.jobs.queue import JobQueue
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
from app.jobs.redis_store import RedisJobStore
from app.jobs.results import ResultStore, S3Results, result_store
from app.jobs.sqlite_store import JobStore

if TYPE_CHECKING:
    from app.wiring import Services

log = logging.getLogger("app.jobs")

MAX_RUNNING_JOBS = 4
"""Jobs producing archives at once; others wait queued."""
MAX_PENDING_JOBS = 200
"""Queued + running jobs this process accepts; beyond that POST answers 503 (a cheap flood guard)."""
QUEUED_RESEND_SECONDS = 300.0
"""With REDIS_URL: a job still queued this long after its message was sent gets the message again
(a worker killed between popping a message and claiming its job lost it; duplicates are no-ops)."""
MAX_SHARED_QUEUED_JOBS = 1000
"""With REDIS_URL: queued jobs across all instances beyond which POST answers 503."""
CLEANUP_INTERVAL_SECONDS = 60.0
PROGRESS_INTERVAL_SECONDS = 0.5
FLIGHT_WAIT_SECONDS = 3600.0
"""Longest wait for an identical job or stream in flight (its leader's lease ends a dead leader's claim)."""

RESTART_REASON = "interrupted by a service restart; create a new job"
SHUTDOWN_REASON = "service shut down while the job was running"
WORKER_LOST_REASON = "the worker running this job stopped responding"
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


# -- the manager ------------------------------------------------------------------------------------


class LeaseLost(Exception):
    """Another manager declared this run dead and took the job over: stop quietly."""


class JobManager:
    """Creates jobs, queues them, runs the ones this process consumes, serves results, expires them."""

    def __init__(
        self,
        services: Services,
        store: JobStore | RedisJobStore,
        results: ResultStore,
        cleanup_interval: float,
    ) -> None:
        self.services = services
        self.store = store
        self.results = results
        self.directory = services.settings.jobs_dir
        self.cleanup_interval = cleanup_interval
        self.queue = JobQueue.for_settings(services.settings, self.execute)
        self._slots = asyncio.Semaphore(MAX_RUNNING_JOBS)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # runs in this process, by job id
        self._pending: set[str] = set()  # created here and not finished (in-memory queue only)
        self._orders: dict[str, OrderInfo] = {}  # orders fetched by create(), handed to the local run
        self._running: dict[str, int] = {}  # job id -> attempt, while this process holds its lease
        self._background: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def ttl_seconds(self) -> float:
        """Read on every use, so an operator (or a test) changing the settings object takes effect."""
        return float(self.services.settings.job_ttl_seconds)

    @property
    def lease_seconds(self) -> float:
        return float(self.services.settings.job_lease_seconds)

    @property
    def distributed(self) -> bool:
        """Jobs go through Redis: other processes may create, run and sweep them."""
        return self.queue.distributed

    @classmethod
    async def start(
        cls, services: Services, *, cleanup_interval: float | None = None, consume: bool | None = None
    ) -> JobManager:
        """Open the store and the queue, recover or sweep what others left, start the background loops.

        `consume` (default: JOB_WORKERS_IN_API) says whether this process runs jobs from the Redis
        queue; with the in-memory queue it always runs its own.
        """
        settings = services.settings
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        store: JobStore | RedisJobStore
        if settings.redis_url is not None:
            store = RedisJobStore.connect(settings.redis_url.get_secret_value(), settings.redis_key_prefix)
        else:
            store = await JobStore.open(settings.data_dir / "jobs.sqlite3")
        interval = CLEANUP_INTERVAL_SECONDS if cleanup_interval is None else cleanup_interval
        manager = cls(services, store, result_store(settings), interval)
        consume = settings.job_workers_in_api if consume is None else consume
        if not manager.distributed:
            await manager.queue.startup()
            await manager._recover()
            await manager.cleanup()
            manager._loop(manager.cleanup, manager.cleanup_interval, "jobs-cleanup")
            return manager
        try:
            await manager._start_shared(consume)
        except (RedisError, OSError) as exc:
            # Redis down at start: serve anyway (GET /ready says what is wrong, job routes answer 503)
            # and keep trying, rather than crash-loop the whole service on a dependency.
            log.error("job store unreachable at start; retrying in the background", extra={"error": repr(exc)})
            manager._background.append(asyncio.create_task(manager._retry_start(consume), name="jobs-start"))
        return manager

    async def _start_shared(self, consume: bool) -> None:
        """Shared store: connect the queue, take over what dead runners left, start sweeping and consuming."""
        await self.queue.startup()
        await self.sweep()
        await self.cleanup()
        self._loop(self.cleanup, self.cleanup_interval, "jobs-cleanup")
        self._loop(self.sweep, self.lease_seconds / 3, "jobs-sweep")
        if consume:
            consumer = asyncio.create_task(self.queue.consume(MAX_RUNNING_JOBS), name="jobs-consume")
            self._background.append(consumer)

    async def _retry_start(self, consume: bool, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
        delay = first_delay
        while True:
            await asyncio.sleep(delay)
            try:
                await self._start_shared(consume)
            except (RedisError, OSError):
                delay = min(delay * 2, max_delay)
                continue
            log.warning("job store reachable again; jobs running")
            return

    def _loop(self, step: Callable[[], Awaitable[Any]], interval: float, name: str) -> None:
        async def forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await step()
                except Exception:  # a bad pass must not stop the next one
                    log.exception("jobs background pass failed", extra={"loop": name})

        self._background.append(asyncio.create_task(forever(), name=name))

    async def _recover(self) -> None:
        """Single box: this process owns the data_dir, so whatever is `running` was lost with the last one."""
        was_running = await self.store.with_status(JobStatus.running)
        interrupted = await self.store.fail_all_running(RESTART_REASON)  # type: ignore[union-attr]
        for job in was_running:
            await self._announce(job.job_id)
        for part in self.directory.glob("*.zip.part"):  # nothing runs yet, so every .part is a leftover
            part.unlink(missing_ok=True)
        queued = await self.store.with_status(JobStatus.queued)
        for job in queued:
            self._pending.add(job.job_id)
            await self.queue.kick(job.job_id, job.attempt)
        if interrupted or queued:
            log.warning("jobs recovered", extra={"interrupted": interrupted, "requeued": len(queued)})

    async def sweep(self, now: float | None = None) -> int:
        """Shared store: run again (or fail) every `running` job whose runner stopped renewing its
        lease; send again the message of a job queued for QUEUED_RESEND_SECONDS (lease_until of a
        queued job is that deadline)."""
        now = time.time() if now is None else now
        swept = 0
        for job in await self.store.with_status(JobStatus.running):
            if job.lease_until is None or job.lease_until >= now or job.job_id in self._running:
                continue
            log.warning("job lease lapsed", extra={"job_id": job.job_id, "attempt": job.attempt})
            swept += await self._retry_or_fail(job, WORKER_LOST_REASON)
        for job in await self.store.with_status(JobStatus.queued):
            if job.lease_until is None or job.lease_until >= now:
                continue
            if await self.store.update(
                job.job_id,
                only_if=JobStatus.queued,
                only_attempt=job.attempt,
                lease_until=now + QUEUED_RESEND_SECONDS,
            ):
                log.warning("queued job's message sent again", extra={"job_id": job.job_id, "attempt": job.attempt})
                await self.queue.kick(job.job_id, job.attempt)
                swept += 1
        return swept

    async def _retry_or_fail(self, job: Job, reason: str) -> int:
        """Take a running job from its (dead or departing) runner: attempt + 1 if any are left, else fail."""
        limit = self.services.settings.job_max_attempts
        if job.attempt < limit:
            taken = await self.store.update(
                job.job_id,
                only_if=JobStatus.running,
                only_attempt=job.attempt,
                status=JobStatus.queued,
                attempt=job.attempt + 1,
                lease_until=time.time() + QUEUED_RESEND_SECONDS,
                started_at=None,
                downloaded=0,
                failed=0,
            )
            if taken:
                await self.queue.kick(job.job_id, job.attempt + 1)
                log.warning("job queued again", extra={"job_id": job.job_id, "attempt": job.attempt + 1})
            return int(taken)
        taken = await self.store.update(
            job.job_id,
            only_if=JobStatus.running,
            only_attempt=job.attempt,
            status=JobStatus.failed,
            error=f"{reason} (attempt {job.attempt} of {limit}); create a new job",
            lease_until=None,
            finished_at=time.time(),
        )
        if taken:
            await self._announce(job.job_id)
        return int(taken)

    # -- public API used by the routes ------------------------------------------------------------

    async def create(
        self,
        order: OrderInfo,
        options: BatchOptions,
        *,
        callback_url: str | None = None,
        public_base_url: str | None = None,
        wait: WaitOptions | None = None,
    ) -> Job:
        """Record a queued job for an order already fetched, and queue it (it waits for a slot).

        `callback_url` (already validated) gets the signed webhook when the job ends; see app/webhooks.
        `wait` (wait=true): the run first polls the order until no image is processing. It is kept in
        the record, not in this process, since another process may run the job.
        """
        if self._closing:
            raise TooManyJobs("The service is shutting down; try again shortly")
        if len(self._pending) >= MAX_PENDING_JOBS or (
            isinstance(self.store, RedisJobStore) and await self.store.count(JobStatus.queued) >= MAX_SHARED_QUEUED_JOBS
        ):
            raise TooManyJobs(headers={"Retry-After": "30"})
        self.services.engine.check(order)  # 422 now rather than a failed job later
        now = time.time()
        job = Job(
            job_id=str(uuid.uuid4()),
            order_id=order.order_id,
            order_name=order.name,
            status=JobStatus.queued,
            options=options,
            total=len(order.images) + order.unidentified,
            created_at=now,
            callback_url=callback_url,
            public_base_url=public_base_url,
            lease_until=now + QUEUED_RESEND_SECONDS if self.distributed else None,
            wait_seconds=wait.timeout if wait is not None and wait.wait else None,
        )
        await self.store.insert(job)
        if not self.distributed:
            self._pending.add(job.job_id)
            self._orders[job.job_id] = order  # the local run need not fetch it again
        try:
            await self.queue.kick(job.job_id, job.attempt)
        except Exception as exc:
            log.exception("could not queue the job", extra={"job_id": job.job_id})
            await self.store.update(
                job.job_id, status=JobStatus.failed, error="the job queue is unavailable", finished_at=time.time()
            )
            self._pending.discard(job.job_id)
            self._orders.pop(job.job_id, None)
            raise TooManyJobs("The job queue is unavailable; try again shortly") from exc
        log.info("job created", extra={"job_id": job.job_id, "order_id": job.order_id, "total": job.total})
        return job

    async def get(self, job_id: str) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise JobNotFound()
        return job

    async def result(self, job_id: str) -> tuple[Job, Path | str]:
        """The finished archive of a job (a local path, or a presigned URL of the object in S3), or
        the error that says why there is none (409/410/422)."""
        job = await self.get(job_id)
        if job.status in (JobStatus.queued, JobStatus.running):
            raise JobNotReady(
                f"Job is {job.status.value} ({job.downloaded + job.failed}/{job.total} images done); "
                f"poll {job.status_url} until its status is 'complete'",
                headers={"Retry-After": "2"},
            )
        if job.status is JobStatus.failed:
            raise JobFailed(f"The job failed: {job.error}", list(job.failures))
        location = None if job.is_expired(self.ttl_seconds) else await self.results.locate(job.job_id)
        if location is None and self.distributed and not job.is_expired(self.ttl_seconds) and job.runner != RUNNER:
            raise JobExpired(
                f"The job's archive is on the disk of the process that ran it ({job.runner}), not this "
                "instance's; several instances need S3_BUCKET for job results"
            )
        if location is None:
            raise JobExpired(
                f"The job's archive expired at {iso(job.expires_at(self.ttl_seconds))} and was "
                "deleted; create a new job"
            )
        return job, location

    async def aclose(self) -> None:
        """Stop consuming, stop this process's runs and settle their records, close the store.

        Single box: a run cut short fails (SHUTDOWN_REASON); queued jobs stay queued for the next
        start. Shared: a run cut short is handed back to the queue (another worker takes it).
        """
        self._closing = True
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        runs = list(self._tasks.values())
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for job_id, attempt in sorted(self._running.items()):
            if self.distributed:
                job = await self.store.get(job_id)
                if job is not None and job.attempt == attempt:
                    await self._retry_or_fail(job, SHUTDOWN_REASON)
                continue
            await self.store.update(
                job_id,
                only_if=JobStatus.running,
                status=JobStatus.failed,
                error=SHUTDOWN_REASON,
                finished_at=time.time(),
                lease_until=None,
            )
            log.warning("job cancelled by shutdown", extra={"job_id": job_id})
            await self._announce(job_id)
        self._running.clear()
        await self.queue.shutdown()
        await self.store.close()

    # -- running a job ----------------------------------------------------------------------------

    async def execute(self, job_id: str, attempt: int) -> None:
        """The queue's task: run attempt `attempt` of a job, if it is still that job's queued attempt."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks[job_id] = task
        try:
            await self._run(job_id, attempt)
        finally:
            if self._tasks.get(job_id) is task:
                del self._tasks[job_id]
            self._pending.discard(job_id)

    async def _run(self, job_id: str, attempt: int) -> None:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        order = self._orders.pop(job_id, None)
        async with self._slots:
            now = time.time()
            claimed = await self.store.update(
                job_id,
                only_if=JobStatus.queued,
                only_attempt=attempt,
                status=JobStatus.running,
                started_at=now,
                lease_until=now + self.lease_seconds,
                runner=RUNNER,
            )
            job = await self.store.get(job_id)
            if not claimed or job is None:  # a duplicate or stale message: someone else has this run
                log.info("job message skipped", extra={"attempt": attempt})
                return
            structlog.contextvars.bind_contextvars(order_id=job.order_id)
            self._running[job_id] = attempt
            log.info("job started", extra={"attempt": attempt})
            held: list[Flight] = []  # landed only once the record says where the result is
            try:
                try:
                    outcome = await self._produce_under_lease(job, order, held)
                except LeaseLost:
                    self._running.pop(job_id, None)
                    log.warning("job taken over by another runner", extra={"attempt": attempt})
                    return
                except ServiceError as exc:  # upstream trouble on a resumed job's order fetch, and the like
                    outcome = {"status": JobStatus.failed, "error": exc.message}
                except Exception as exc:
                    log.exception("job crashed")
                    outcome = {"status": JobStatus.failed, "error": f"internal error ({type(exc).__name__})"}
                settled = await self.store.update(
                    job_id,
                    only_if=JobStatus.running,
                    only_attempt=attempt,
                    finished_at=time.time(),
                    lease_until=None,
                    **outcome,
                )
            finally:
                for flight in held:
                    await asyncio.shield(flight.land())
            self._running.pop(job_id, None)
        if not settled:
            log.warning("job finished after another runner took it over", extra={"attempt": attempt})
            return
        await asyncio.shield(self._announce(job_id))  # a shutdown now must not lose the callback
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

    async def _announce(self, job_id: str) -> None:
        """A job reached its final status: hand it to the webhooks (they queue its callback, if any)."""
        webhooks = self.services.webhooks
        job = await self.store.get(job_id)
        if webhooks is None or job is None:
            return
        try:
            await webhooks.job_finished(job)
        except Exception:  # a broken outbox must not turn a finished job into a crashed task
            log.exception("could not queue the job's webhook", extra={"job_id": job_id})

    async def _produce_under_lease(self, job: Job, order: OrderInfo | None, held: list[Flight]) -> dict[str, Any]:
        """Produce the archive while renewing the lease; LeaseLost if the lease was taken meanwhile."""
        progress: list[Batch] = []
        produce = asyncio.create_task(self._produce(job, order, progress, held), name=f"job-produce-{job.job_id}")
        beat = asyncio.create_task(self._heartbeat(job, progress), name=f"job-heartbeat-{job.job_id}")
        try:
            await asyncio.wait({produce, beat}, return_when=asyncio.FIRST_COMPLETED)
            if produce.done():
                return produce.result()
            beat.result()  # a heartbeat that crashed (say, Redis unreachable) fails the job with its error
            raise LeaseLost()
        finally:
            for task in (produce, beat):
                task.cancel()
            await asyncio.gather(produce, beat, return_exceptions=True)

    async def _heartbeat(self, job: Job, progress: list[Batch]) -> None:
        """Publish the counts (at most every PROGRESS_INTERVAL_SECONDS) and renew the lease (every
        third of it); return when the record says another run owns the job."""
        written = (0, 0)
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(min(PROGRESS_INTERVAL_SECONDS, self.lease_seconds / 3))
            fields: dict[str, Any] = {}
            if progress:
                counts = (progress[0].downloaded, progress[0].failed)
                if counts != written:
                    fields.update(downloaded=counts[0], failed=counts[1])
                    written = counts
            if time.monotonic() - renewed >= self.lease_seconds / 3:
                fields["lease_until"] = time.time() + self.lease_seconds
                renewed = time.monotonic()
            if fields and not await self.store.update(
                job.job_id, only_if=JobStatus.running, only_attempt=job.attempt, **fields
            ):
                return

    async def _produce(
        self, job: Job, order: OrderInfo | None, progress: list[Batch], held: list[Flight]
    ) -> dict[str, Any]:
        """Run the engine into the job's file (or reuse an identical run's); the record fields of the end."""
        if order is None:  # queued by another process, or resumed: the order may have changed (open re-checks)
            order = await self.services.client.get_order(job.order_id)
            await self.store.update(
                job.job_id,
                only_attempt=job.attempt,
                order_name=order.name,
                total=len(order.images) + order.unidentified,
            )
        if job.wait_seconds:
            order = await wait_until_ready(self.services.client, order, WaitOptions(True, job.wait_seconds))
        reused = await self._lead_or_reuse(job, order, held)
        if reused is not None:
            return reused
        batch = await self.services.engine.open(order, job.options)
        progress.append(batch)
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
            await batch.aclose()

    async def _lead_or_reuse(self, job: Job, order: OrderInfo, held: list[Flight]) -> dict[str, Any] | None:
        """Single-flight: lead this order+options+version (None: go fetch), or wait for whoever leads
        it (a job or a streamed response, here or on another instance) and reuse a complete result."""
        flights = self.services.flights
        if flights is None:
            return None
        key = flight_key(order, job.options)
        while True:
            flight = await flights.claim(key, f"job:{job.job_id}", succeed=True)
            if flight is not None:
                held.append(flight)
                return await self._reuse_shared(job, order)  # an archive any instance streamed earlier
            leader = await flights.leader(key)
            log.info("identical work in flight; waiting for it", extra={"leader": leader})
            try:
                async with asyncio.timeout(FLIGHT_WAIT_SECONDS):
                    await flights.wait(key)
            except TimeoutError:
                return None  # a leader this slow: fetch ourselves rather than wait on
            reused = await self._reuse(job, order, leader)
            if reused is not None:
                return reused

    async def _reuse(self, job: Job, order: OrderInfo, leader: str | None) -> dict[str, Any] | None:
        """The outcome of copying a finished identical result (only one where nothing failed, as the
        cache does: a retry must really retry), or None."""
        if leader is not None and leader.startswith("job:"):
            source = await self.store.get(leader.removeprefix("job:"))
            if (
                source is not None
                and source.status is JobStatus.complete
                and source.failed == 0
                and not source.is_expired(self.ttl_seconds)
                and await self.results.copy(source.job_id, job.job_id)
            ):
                log.info("job reused an identical job's archive", extra={"source": source.job_id})
                return _reused(source.downloaded, source.size)
        reused = await self._reuse_shared(job, order)
        if reused is not None:
            return reused
        cached = self.services.cache.lookup(self.services.cache.key(order.order_id, job.options, order.last_updated_at))
        if cached is not None:
            part = self.directory / f"{job.job_id}.zip.part"
            await asyncio.to_thread(shutil.copyfile, cached.path, part)
            await self.results.publish(job.job_id, part)
            log.info("job reused a cached archive")
            return _reused(int(cached.meta.get("downloaded", 0)), cached.size)
        return None

    async def _reuse_shared(self, job: Job, order: OrderInfo) -> dict[str, Any] | None:
        """With REDIS_URL and S3_BUCKET: copy the shared cache's archive (made by a stream on any
        instance) to this job's object, server-side; None if there is none."""
        shared = self.services.shared_cache
        if shared is None or not isinstance(self.results, S3Results):
            return None
        cache_key = self.services.cache.key(order.order_id, job.options, order.last_updated_at)
        meta = await shared.lookup(cache_key)
        if meta is None or not await shared.copy_to(cache_key, self.results.object_key(job.job_id)):
            return None
        log.info("job reused a shared cached archive")
        return _reused(int(meta["downloaded"]), int(meta["size"]))

    async def _write(self, job_id: str, batch: Batch) -> int:
        """Archive bytes to `<id>.zip.part`, written in a thread (the archive's chunks are already
        1 MiB each), then published as the job's result (a rename on disk, or an upload)."""
        part = self.directory / f"{job_id}.zip.part"
        size = 0
        file = await asyncio.to_thread(_open_for_write, part)
        try:
            async for chunk in batch.archive():
                size += len(chunk)
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(_finish_file, file)
            await self.results.publish(job_id, part)
        except BaseException:
            file.close()
            part.unlink(missing_ok=True)
            raise
        return size

    # -- expiry -----------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Delete the archives of jobs past their TTL (the record stays, so download says 410);
        delete records finished more than RECORD_RETENTION_SECONDS ago."""
        now = time.time()
        due = await self.store.due_for_expiry(now - self.ttl_seconds)
        for job in due:
            await self.results.delete(job.job_id)
            await self.store.update(job.job_id, expired_at=now)
        gone = await self.store.delete_finished_before(now - RECORD_RETENTION_SECONDS)
        for job_id in gone:
            await self.results.delete(job_id)
        if due or gone:
            log.info("jobs expired", extra={"expired": len(due), "deleted": len(gone)})


def flight_key(order: OrderInfo, options: BatchOptions) -> str:
    """The single-flight key of an archive: the cache's key (order, options, order version)."""
    return "zip:" + ArchiveCache.key(order.order_id, options, order.last_updated_at)


def _reused(downloaded: int, size: int | None) -> dict[str, Any]:
    return {
        "status": JobStatus.complete,
        "error": None,
        "downloaded": downloaded,
        "failed": 0,
        "failures": [],
        "size": size,
    }


def _open_for_write(path: Path) -> IO[bytes]:
    return open(path, "wb")  # closed by _finish_file, or by _write on error


def _finish_file(file: IO[bytes]) -> None:
    """fsync before the rename, so a `.zip` on disk is always a whole archive."""
    with file:
        file.flush()
        os.fsync(file.fileno())
