"""Supervision: no job record is ever left stuck `running`, and finished archives expire.

- single box (SQLite): one or more processes share a data_dir (`serve --workers N`). Each job
  names the process that queued or runs it (`runner`, "host:pid"). At start a process fails the
  jobs that a process now gone left `running` (their work is lost) and starts the `queued` ones
  again; while it runs it sweeps every JOB_LEASE_SECONDS/3 for jobs whose process died (killed,
  crashed) and takes them over as the shared mode does (attempt + 1), never touching the jobs of a
  live neighbour;
- shared (Redis): a runner renews its job's lease every JOB_LEASE_SECONDS/3; every manager sweeps
  `running` jobs whose lease lapsed (the runner died or hung) and runs them again as attempt + 1, up
  to JOB_MAX_ATTEMPTS, then fails them with the reason;
- expiry: archives of jobs past JOB_TTL_SECONDS are deleted (the record stays, so a download says
  410); records finished more than RECORD_RETENTION_SECONDS ago are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import RedisError
from taskiq.exceptions import SendTaskError

from app.config import Settings
from app.core import owner
from app.jobs.queue import JobQueue
from app.jobs.records import RECORD_RETENTION_SECONDS, Job, JobStatus
from app.jobs.results import ResultStore, part_job_id
from app.jobs.store import JobStore

log = logging.getLogger("app.jobs")

CLEANUP_INTERVAL_SECONDS = 60.0
QUEUED_RESEND_SECONDS = 300.0
"""With REDIS_URL: a job still queued this long after its message was sent gets the message again
(a worker killed between popping a message and claiming its job lost it; duplicates are no-ops)."""

MAX_HAND_BACKS = 10
"""Graceful hand-backs of one job before they count as failed runs: a job that somehow makes every
worker that takes it stop must still end."""

RESTART_REASON = "interrupted by a service restart; create a new job"
SHUTDOWN_REASON = "service shut down while the job was running"
WORKER_LOST_REASON = "the worker running this job stopped responding"


class Supervisor:
    """Recovery, lease sweeps, retry-or-fail and expiry, plus the background loops that run them."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        results: ResultStore,
        queue: JobQueue,
        announce: Callable[[str], Awaitable[None]],
        running: Mapping[str, int],
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.queue = queue
        self.announce = announce
        self._running = running  # the runner's own runs: never swept by this process
        self._unsent: dict[str, int] = {}  # job id -> attempt whose message Redis refused: sent at the next sweep
        self.directory = settings.jobs_dir
        self._loops: list[asyncio.Task[None]] = []

    @property
    def ttl_seconds(self) -> float:
        """Read on every use, so an operator (or a test) changing the settings object takes effect."""
        return float(self.settings.job_ttl_seconds)

    def loop(self, step: Callable[[], Awaitable[Any]], interval: float, name: str) -> None:
        """Run `step` every `interval` seconds until `stop()`; a failed pass is logged, the next one runs."""

        async def forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await step()
                except Exception:  # a bad pass must not stop the next one
                    log.exception("jobs background pass failed", extra={"loop": name})

        self._loops.append(asyncio.create_task(forever(), name=name))

    def start_cleanup(self, interval: float | None = None) -> None:
        self.loop(self.cleanup, CLEANUP_INTERVAL_SECONDS if interval is None else interval, "jobs-cleanup")

    def start_sweeping(self) -> None:
        self.loop(self.sweep, self.settings.job_lease_seconds / 3, "jobs-sweep")

    def start_box_sweeping(self) -> None:
        self.loop(self.sweep_box, self.settings.job_lease_seconds / 3, "jobs-box-sweep")

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def recover(self) -> list[str]:
        """Single box, at start: whatever a process now gone left `running` was lost with it; the ids
        of the `queued` jobs, queued again (a neighbour's too: the runner's conditional claim lets
        only one process run each)."""
        interrupted = 0
        live: set[str] = set()
        for job in await self.store.with_status(JobStatus.running):
            if not _lost_at_start(job):
                live.add(job.job_id)
                continue
            failed = await self.store.update(
                job.job_id, only_if=JobStatus.running, status=JobStatus.failed, error=RESTART_REASON, finished_at=time.time()
            )
            interrupted += int(failed)
            await self.announce(job.job_id)
        for part in self.directory.glob("*.zip.part"):  # nothing of ours runs yet: a live neighbour's stay
            if part_job_id(part.name) not in live:
                part.unlink(missing_ok=True)
        queued = await self.store.with_status(JobStatus.queued)
        for job in queued:
            await self.queue.kick(job.job_id, job.attempt)
        if interrupted or queued:
            log.warning("jobs recovered", extra={"interrupted": interrupted, "requeued": len(queued)})
        return [job.job_id for job in queued]

    async def sweep(self, now: float | None = None) -> int:
        """Shared store: run again (or fail) every `running` job whose runner stopped renewing its
        lease; send again the message of a job queued for QUEUED_RESEND_SECONDS (lease_until of a
        queued job is that deadline)."""
        now = time.time() if now is None else now
        swept = 0
        for job_id, attempt in list(self._unsent.items()):
            job = await self.store.get(job_id)
            if job is None or job.status is not JobStatus.queued or job.attempt != attempt:
                self._unsent.pop(job_id, None)
            elif await self.send(job_id, attempt):
                swept += 1
        for job in await self.store.with_status(JobStatus.running):
            if job.lease_until is None or job.lease_until >= now or job.job_id in self._running:
                continue
            log.warning("job lease lapsed", extra={"job_id": job.job_id, "attempt": job.attempt})
            swept += await self.retry_or_fail(job, WORKER_LOST_REASON)
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
                swept += await self.send(job.job_id, job.attempt)
        return swept

    async def sweep_box(self) -> int:
        """Single box, several processes: take over the jobs of a neighbour that died. Its `running`
        jobs run again (attempt + 1, or fail past JOB_MAX_ATTEMPTS); its `queued` jobs, which lived
        in its memory only, are queued here."""
        swept = 0
        for job in await self.store.with_status(JobStatus.running):
            if job.job_id not in self._running and owner.gone(job.runner):
                log.warning("job's process died", extra={"job_id": job.job_id, "runner": job.runner})
                swept += await self.retry_or_fail(job, WORKER_LOST_REASON)
        for job in await self.store.with_status(JobStatus.queued):
            if owner.gone(job.runner) and await self.store.update(
                job.job_id, only_if=JobStatus.queued, only_attempt=job.attempt, runner=owner.PROCESS
            ):
                log.warning("queued job of a process that died queued here", extra={"job_id": job.job_id})
                await self.send(job.job_id, job.attempt)
                swept += 1
        return swept

    async def send(self, job_id: str, attempt: int) -> bool:
        """Queue a job's message; if Redis refuses it even after the client's retries, keep it and send
        it at the next sweep (seconds), not when the record's resend deadline passes (minutes)."""
        try:
            await self.queue.kick(job_id, attempt)
        except (SendTaskError, RedisError, OSError) as exc:  # taskiq wraps the broker's error
            self._unsent[job_id] = attempt
            log.warning("job message not sent; trying at the next sweep", extra={"job_id": job_id, "error": repr(exc)})
            return False
        self._unsent.pop(job_id, None)
        return True

    async def retry_or_fail(self, job: Job, reason: str, *, handed_back: bool = False) -> int:
        """Take a running job from its dead runner: attempt + 1 if any are left, else fail. A run its
        departing runner hands back (`handed_back`: SIGTERM) is not a failure and always runs again
        (up to MAX_HAND_BACKS), without spending one of JOB_MAX_ATTEMPTS."""
        limit = self.settings.job_max_attempts
        failed_runs = job.attempt - job.handed_back  # this one included
        if (handed_back and job.handed_back < MAX_HAND_BACKS) or failed_runs < limit:
            taken = await self.store.update(
                job.job_id,
                only_if=JobStatus.running,
                only_attempt=job.attempt,
                status=JobStatus.queued,
                attempt=job.attempt + 1,
                handed_back=job.handed_back + int(handed_back),
                lease_until=time.time() + QUEUED_RESEND_SECONDS,
                started_at=None,
                downloaded=0,
                failed=0,
            )
            if taken:
                await self.send(job.job_id, job.attempt + 1)
                log.warning("job queued again", extra={"job_id": job.job_id, "attempt": job.attempt + 1})
            return int(taken)
        taken = await self.store.update(
            job.job_id,
            only_if=JobStatus.running,
            only_attempt=job.attempt,
            status=JobStatus.failed,
            error=f"{reason} (attempt {failed_runs} of {limit}); create a new job",
            lease_until=None,
            finished_at=time.time(),
        )
        if taken:
            await self.announce(job.job_id)
        return int(taken)

    async def fail_interrupted(self, job_id: str) -> None:
        """Single box, shutting down: a run cut short fails (the next start cannot resume it)."""
        await self.store.update(
            job_id,
            only_if=JobStatus.running,
            status=JobStatus.failed,
            error=SHUTDOWN_REASON,
            finished_at=time.time(),
            lease_until=None,
        )
        log.warning("job cancelled by shutdown", extra={"job_id": job_id})
        await self.announce(job_id)

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


def _lost_at_start(job: Job) -> bool:
    """A `running` job found by a process starting on a single box: lost unless its process lives.

    This process runs nothing yet, so a job naming its own host:pid is an earlier process's (a
    container restarted as pid 1); one naming another host (a container's new hostname) has only
    its lease to go by.
    """
    if job.runner is None or job.runner == owner.PROCESS or owner.gone(job.runner):
        return True
    host = job.runner.rpartition(":")[0]
    return host != owner.HOST and (job.lease_until is None or job.lease_until < time.time())
