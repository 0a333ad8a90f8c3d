"""Background jobs: the streaming route's archive, prepared on disk and downloaded later.

Why: a browser tab, a proxy with a short timeout or a flaky mobile link cannot always hold one long
streamed response. A job answers 202 at once, runs the same engine into `<jobs_dir>/<id>.zip`, and
the download is then a plain file (Content-Length, Range, resumable).

This module is the jobs' public face (create, get, result) and their lifecycle (start, aclose).
The pieces behind it, one concept each:
- `store` the record interface (authoritative), with `sqlite_store` (one box) and `redis_store`
  (REDIS_URL) behind it; `records` what a job is;
- `queue` taskiq: in this process by default, any consumer (`python -m app.worker`) with Redis;
- `runner` runs one attempt under a lease, through the archive policy (app/archives/service.py);
- `supervisor` recovery, lease sweeps, retry-or-fail and expiry;
- `results` where finished archives live (disk, or S3).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from app.archives.service import Archives
from app.config import Settings
from app.core import owner
from app.core.budget.disk import DiskBudget
from app.core.delivery.selection import selected
from app.core.delivery.sets import files_total
from app.core.delivery.sharing import ShareSigner, ShareToken, load_secret, new_share_id
from app.core.models import BatchOptions, OrderInfo
from app.core.stats import Stats
from app.core.upstream.client import AutoenhanceClient
from app.core.wait import WaitOptions
from app.jobs.queue import JobQueue
from app.jobs.records import (
    Job,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobListener,
    JobNotFound,
    JobNotReady,
    JobStatus,
    ShareGone,
    ShareNotFound,
    TooManyJobs,
    iso,
)
from app.jobs.results import ResultStore, result_store
from app.jobs.runner import RUNNER, Announcer, JobRunner
from app.jobs.store import JobStore, open_store
from app.jobs.supervisor import QUEUED_RESEND_SECONDS, SHUTDOWN_REASON, Supervisor

log = logging.getLogger("app.jobs")

MAX_PENDING_JOBS = 200
"""Queued + running jobs this process accepts; beyond that POST answers 503 (a cheap flood guard)."""
CANCEL_REASON = "cancelled by a DELETE of the job"
CANCEL_TRIES = 5
"""A cancel re-reads the record when it raced a status change; each race is one status step, so a few suffice."""
MAX_SHARED_QUEUED_JOBS = 1000
"""With REDIS_URL: queued jobs across all instances beyond which POST answers 503."""


class JobManager:
    """Creates jobs, queues them, serves their results; owns the runner and the supervisor of this process."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        results: ResultStore,
        archives: Archives,
        client: AutoenhanceClient,
        stats: Stats,
        listener: JobListener | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.engine = archives.engine
        announce = Announcer(store, listener)
        self.runner = JobRunner(settings, store, results, archives, client, stats, announce)
        self.queue = JobQueue.for_settings(settings, self.runner.execute)
        self.supervisor = Supervisor(settings, store, results, self.queue, announce, self.runner.running)
        secret = settings.share_secret.get_secret_value() if settings.share_secret else None
        self.signer = ShareSigner(load_secret(secret, settings.data_dir))
        self.disk = DiskBudget(settings.data_dir, settings.data_dir_max_bytes, settings.data_dir_min_free_bytes)
        self._starting: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def ttl_seconds(self) -> float:
        """Read on every use, so an operator (or a test) changing the settings object takes effect."""
        return float(self.settings.job_ttl_seconds)

    @property
    def distributed(self) -> bool:
        """Jobs go through Redis: other processes may create, run and sweep them."""
        return self.queue.distributed

    @classmethod
    async def start(
        cls,
        settings: Settings,
        archives: Archives,
        client: AutoenhanceClient,
        stats: Stats,
        *,
        listener: JobListener | None = None,
        consume: bool | None = None,
    ) -> JobManager:
        """Open the store and the queue, recover or sweep what others left, start the background loops.

        `listener` hears of every job that ends (the webhooks). `consume` (default:
        JOB_WORKERS_IN_API) says whether this process runs jobs from the Redis queue; with the
        in-memory queue it always runs its own.
        """
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(settings)
        manager = cls(settings, store, result_store(settings), archives, client, stats, listener)
        consume = settings.job_workers_in_api if consume is None else consume
        if not manager.distributed:
            await manager.queue.startup()
            manager.runner.pending.update(await manager.supervisor.recover())
            await manager.supervisor.cleanup()
            manager.supervisor.start_cleanup()
            manager.supervisor.start_box_sweeping()  # neighbours on this data_dir may die
            return manager
        try:
            await manager._start_shared(consume)
        except (RedisError, OSError) as exc:
            # Redis down at start: serve anyway (GET /ready says what is wrong, job routes answer 503)
            # and keep trying, rather than crash-loop the whole service on a dependency.
            log.error("job store unreachable at start; retrying in the background", extra={"error": repr(exc)})
            manager._starting = asyncio.create_task(manager._retry_start(consume), name="jobs-start")
        return manager

    async def _start_shared(self, consume: bool) -> None:
        """Shared store: connect the queue, take over what dead runners left, start sweeping and consuming."""
        await self.queue.startup()
        await self.supervisor.sweep()
        await self.supervisor.cleanup()
        self.supervisor.start_cleanup()
        self.supervisor.start_sweeping()
        if consume:
            self._consumer = asyncio.create_task(self.queue.consume(self.runner.slots), name="jobs-consume")

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

    # -- public API used by the routes ------------------------------------------------------------

    async def create(
        self,
        order: OrderInfo,
        options: BatchOptions,
        *,
        callback_url: str | None = None,
        public_base_url: str | None = None,
        wait: WaitOptions | None = None,
        share_expires_in: float | None = None,
    ) -> Job:
        """Record a queued job for an order already fetched, and queue it (it waits for a slot).

        `callback_url` (already validated) gets the signed webhook when the job ends; see app/webhooks.
        `wait` (wait=true): the run first polls the order until no image is processing. It is kept in
        the record, not in this process, since another process may run the job.
        """
        if self._closing:
            raise TooManyJobs("The service is shutting down; try again shortly")
        if len(self.runner.pending) >= MAX_PENDING_JOBS or (
            self.distributed and await self.store.count(JobStatus.queued) >= MAX_SHARED_QUEUED_JOBS
        ):
            raise TooManyJobs(headers={"Retry-After": "30"})
        order = selected(order, options)  # the chosen photos: the job's total counts them
        self.engine.check(order)  # 422 now rather than a failed job later
        await self.disk.check()  # 503 now rather than a disk that fills later
        now = time.time()
        job = Job(
            job_id=str(uuid.uuid4()),
            order_id=order.order_id,
            order_name=order.name,
            status=JobStatus.queued,
            options=options,
            total=files_total(order, options),  # files (photos x sets), as the archive and its stream count
            created_at=now,
            callback_url=callback_url,
            public_base_url=public_base_url,
            lease_until=now + QUEUED_RESEND_SECONDS if self.distributed else None,
            runner=None if self.distributed else owner.PROCESS,  # single box: it waits in this process's queue
            wait_seconds=wait.timeout if wait is not None and wait.wait else None,
            shares=(
                ({"share_id": new_share_id(), "expires_at": int(now + share_expires_in), "revoked_at": None},)
                if share_expires_in
                else ()
            ),
        )
        await self.store.insert(job)
        if not self.distributed:
            self.runner.pending.add(job.job_id)
            self.runner.orders[job.job_id] = order  # the local run need not fetch it again
        try:
            await self.queue.kick(job.job_id, job.attempt)
        except Exception as exc:
            log.exception("could not queue the job", extra={"job_id": job.job_id})
            await self.store.update(
                job.job_id, status=JobStatus.failed, error="the job queue is unavailable", finished_at=time.time()
            )
            self.runner.pending.discard(job.job_id)
            self.runner.orders.pop(job.job_id, None)
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
                f"poll {job.status_url} until its status is 'completed' (or 'completed_with_errors')",
                headers={"Retry-After": "2"},
            )
        if job.status is JobStatus.cancelled:
            raise JobCancelled()
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

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job, whatever its status; the record after it (idempotent).

        Queued or running: marked `cancelled` first (so no runner can claim or settle it), then a run
        in this process is stopped and waited for (its downloads end, its slot frees, its `.part`
        goes); a run in another process sees the status at its next heartbeat and does the same.
        The job's webhook says `cancelled`. Finished: its archive is deleted (the record stays, as
        `cancelled`, so a download answers 410).
        """
        for _ in range(CANCEL_TRIES):
            job = await self.get(job_id)
            if job.status is JobStatus.cancelled:
                return job
            now = time.time()
            if job.status in (JobStatus.queued, JobStatus.running):
                if not await self.store.update(
                    job_id, only_if=job.status, status=JobStatus.cancelled, error=CANCEL_REASON,
                    finished_at=now, lease_until=None,
                ):
                    continue  # it moved on meanwhile (claimed, finished): look again
                await self.runner.stop(job_id)
                await self.results.delete(job_id)
                await asyncio.to_thread(_remove_parts, self.settings.jobs_dir, job_id)
                await self.runner.announce(job_id)
                log.info("job cancelled", extra={"job_id": job_id, "was": job.status.value})
                return await self.get(job_id)
            if await self.store.update(job_id, only_if=job.status, status=JobStatus.cancelled, expired_at=now):
                await self.results.delete(job_id)
                log.info("finished job cancelled; its archive deleted", extra={"job_id": job_id})
                return await self.get(job_id)
        raise JobNotReady("The job changed status while being cancelled; try again", headers={"Retry-After": "1"})

    # -- share links (app/core/delivery/sharing.py) ---------------------------------------------------------

    async def share(self, job_id: str, expires_in: float) -> tuple[Job, dict[str, Any], str]:
        """A new share link of a job (its record, the share, the token); refused as a download would be
        (409 not ready, 422 failed, 410 cancelled or expired) so a link never points at nothing."""
        job, _ = await self.result(job_id)
        share_id, expires_at = new_share_id(), int(time.time() + expires_in)
        share: dict[str, Any] = {"share_id": share_id, "expires_at": expires_at, "revoked_at": None}
        if not await self.store.update(job_id, only_if=JobStatus.completed, shares=(*job.shares, share)):
            raise JobNotReady("The job changed while the link was made; try again", headers={"Retry-After": "1"})
        log.info("share link made", extra={"job_id": job_id, "share_id": share["share_id"]})
        return await self.get(job_id), share, self.signer.make(job_id, share_id, expires_at)

    async def revoke(self, job_id: str, share_id: str | None) -> Job:
        """Revoke one share link of a job, or all of them (share_id None); 404 for an unknown link."""
        job = await self.get(job_id)
        if share_id is not None and all(s["share_id"] != share_id for s in job.shares):
            raise ShareNotFound()
        now = time.time()
        shares = tuple(
            s | {"revoked_at": now} if share_id in (None, s["share_id"]) and s.get("revoked_at") is None else s
            for s in job.shares
        )
        await self.store.update(job_id, shares=shares)
        log.info("share links revoked", extra={"job_id": job_id, "share_id": share_id or "all"})
        return await self.get(job_id)

    async def shared(self, token: str) -> tuple[Job, Path | str, ShareToken]:
        """What a share link opens: the job and its archive; ShareGone (410) once expired, revoked or
        deleted, ShareNotFound (404) for a link this server did not sign."""
        claims = self.signer.read(token)
        if claims is None:
            raise ShareNotFound()
        job = await self.store.get(claims.job_id)
        share = next((s for s in job.shares if s["share_id"] == claims.share_id), None) if job else None
        if job is None or share is None:
            raise ShareGone("This link no longer works: the download it pointed to was deleted.")
        if share.get("revoked_at") is not None:
            raise ShareGone("This link was withdrawn by whoever shared it. Ask them for a new one.")
        if time.time() >= share["expires_at"]:
            raise ShareGone(f"This link expired on {iso(share['expires_at'])}. Ask whoever shared it for a new one.")
        try:
            _, location = await self.result(job.job_id)
        except (JobExpired, JobCancelled, JobFailed) as exc:
            raise ShareGone("This link no longer works: the download it pointed to was deleted.") from exc
        return job, location, claims

    async def aclose(self) -> None:
        """Stop consuming, stop this process's runs and settle their records, close the store.

        Single box: a run cut short fails (SHUTDOWN_REASON); queued jobs stay queued for the next
        start. Shared: a run cut short is handed back to the queue (another worker takes it).
        """
        self._closing = True
        background = [task for task in (self._starting, self._consumer) if task is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.supervisor.stop()
        await self.runner.cancel_all()
        for job_id, attempt in sorted(self.runner.running.items()):
            if self.distributed:
                job = await self.store.get(job_id)
                if job is not None and job.attempt == attempt:
                    await self.supervisor.retry_or_fail(job, SHUTDOWN_REASON, handed_back=True)
                continue
            await self.supervisor.fail_interrupted(job_id)
        self.runner.running.clear()
        await self.queue.shutdown()
        await self.store.close()


def _remove_parts(directory: Path, job_id: str) -> None:
    """Every attempt's part file of a cancelled job."""
    for part in directory.glob(f"{job_id}.*.zip.part"):
        part.unlink(missing_ok=True)
