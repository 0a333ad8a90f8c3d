"""Running one job: claim its queued attempt, produce the archive under a renewed lease, settle the record.

The archive comes from the one archive policy (app/archives/service.py), as for the streaming route:
a cached or shared archive, or an identical job's, is copied; otherwise the engine's batch is written
to `<jobs_dir>/<id>.<attempt>.zip.part` and published as the job's result (app/jobs/results.py). Every write of
a run is conditional on its attempt, so a runner presumed dead that wakes up cannot overwrite its
successor (app/jobs/supervisor.py takes lapsed runs over).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import structlog
from redis.exceptions import RedisError

from app.archives.service import JOB_PATIENCE_SECONDS, Archives, Build, Finished
from app.config import Settings
from app.core import owner
from app.core.delivery.selection import selected
from app.core.delivery.sets import files_total
from app.core.engine import Batch
from app.core.models import OrderInfo
from app.core.stats import Stats
from app.core.upstream.client import AutoenhanceClient
from app.core.wait import WaitOptions, wait_until_ready
from app.errors import NothingSucceeded, ServiceError
from app.jobs.queue import Ack
from app.jobs.records import Job, JobListener, JobStatus
from app.jobs.results import ResultStore, part_name
from app.jobs.store import JobStore

log = logging.getLogger("app.jobs")

MAX_RUNNING_JOBS = 4
"""Jobs producing archives at once in one process; others wait queued."""
PROGRESS_INTERVAL_SECONDS = 0.5
RUNNER = owner.PROCESS

Outcome = dict[str, Any]
"""The record fields a run ends with (status, error, counts, failures, size)."""


class LeaseLost(Exception):
    """The record no longer belongs to this run (another manager took the job over, or it was
    cancelled): stop quietly."""


class Announcer:
    """Hands a job that reached its final status to the listener (the webhooks queue its callback)."""

    def __init__(self, store: JobStore, listener: JobListener | None) -> None:
        self._store = store
        self._listener = listener

    async def __call__(self, job_id: str) -> None:
        job = await self._store.get(job_id)
        if self._listener is None or job is None:
            return
        try:
            await self._listener.job_finished(job)
        except Exception:  # a broken outbox must not turn a finished job into a crashed task
            log.exception("could not queue the job's webhook", extra={"job_id": job_id})


class JobRunner:
    """Runs the attempts this process takes from the queue, at most MAX_RUNNING_JOBS at once."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        results: ResultStore,
        archives: Archives,
        client: AutoenhanceClient,
        stats: Stats,
        announce: Callable[[str], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.results = results
        self.archives = archives
        self.client = client
        self.stats = stats
        self.announce = announce
        self.directory = settings.jobs_dir
        self.slots = MAX_RUNNING_JOBS
        self._slots = asyncio.Semaphore(MAX_RUNNING_JOBS)
        self.tasks: dict[str, asyncio.Task[None]] = {}  # runs in this process, by job id
        self.running: dict[str, int] = {}  # job id -> attempt, while this process holds its lease
        self.pending: set[str] = set()  # created here and not finished (in-memory queue only)
        self.orders: dict[str, OrderInfo] = {}  # orders fetched by create(), handed to the local run
        self.producing: dict[str, asyncio.Task[Outcome]] = {}  # the archive-making part of each local run

    @property
    def lease_seconds(self) -> float:
        return float(self.settings.job_lease_seconds)

    @property
    def ttl_seconds(self) -> float:
        return float(self.settings.job_ttl_seconds)

    async def execute(self, job_id: str, attempt: int, ack: Ack | None = None) -> None:
        """The queue's task: run attempt `attempt` of a job, if it is still that job's queued attempt.
        `ack` acknowledges the message once the claim has an answer; a claim that raised leaves it
        unacknowledged, so the queue delivers it again."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks[job_id] = task
        try:
            await self._run(job_id, attempt, ack)
        finally:
            if self.tasks.get(job_id) is task:
                del self.tasks[job_id]
            self.pending.discard(job_id)

    async def stop(self, job_id: str) -> None:
        """Stop this process's run of a job (cancelled): its downloads end, its slot and partial file
        go; returns once the run has let go. A run elsewhere notices at its next heartbeat."""
        produce = self.producing.get(job_id)
        if produce is not None:
            produce.cancel()
        run = self.tasks.get(job_id)
        if run is not None and run is not asyncio.current_task():
            await asyncio.wait({run})
        self.pending.discard(job_id)
        self.orders.pop(job_id, None)

    async def cancel_all(self) -> None:
        runs = list(self.tasks.values())
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def _run(self, job_id: str, attempt: int, ack: Ack | None) -> None:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        order = self.orders.pop(job_id, None)
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
            if ack is not None:
                await _acknowledge(ack)
            job = await self.store.get(job_id)
            if not claimed or job is None:  # a duplicate or stale message: someone else has this run
                log.info("job message skipped", extra={"attempt": attempt})
                return
            structlog.contextvars.bind_contextvars(order_id=job.order_id)
            self.running[job_id] = attempt
            log.info("job started", extra={"attempt": attempt})
            held: list[Finished | Build] = []  # their claims land only once the record says where the result is
            try:
                try:
                    outcome = await self._produce_under_lease(job, order, held)
                except LeaseLost:
                    self.running.pop(job_id, None)
                    now_job = await self.store.get(job_id)
                    if now_job is not None and now_job.status is JobStatus.cancelled:
                        await self.results.delete(job_id)  # a result published just before the cancel
                        log.info("job run stopped: cancelled", extra={"attempt": attempt})
                    else:
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
                for answer in held:
                    await asyncio.shield(answer.release())
            self.running.pop(job_id, None)
        if not settled:
            now_job = await self.store.get(job_id)
            if now_job is not None and now_job.status is JobStatus.cancelled:
                await self.results.delete(job_id)  # cancelled as it finished: the result must not outlive it
                log.info("job cancelled as it finished", extra={"attempt": attempt})
                return
            log.warning("job finished after another runner took it over", extra={"attempt": attempt})
            return
        await asyncio.shield(self.announce(job_id))  # a shutdown now must not lose the callback
        if outcome["status"] is JobStatus.failed:
            self.stats.record_error("job", str(outcome["error"]))
        log.info(
            "job finished",
            extra={
                "status": outcome["status"].value,
                "downloaded": outcome.get("downloaded"),
                "failed": outcome.get("failed"),
            },
        )

    async def _produce_under_lease(self, job: Job, order: OrderInfo | None, held: list[Finished | Build]) -> Outcome:
        """Produce the archive while renewing the lease; LeaseLost if the lease was taken meanwhile."""
        progress: list[Batch] = []
        produce = asyncio.create_task(self._produce(job, order, progress, held), name=f"job-produce-{job.job_id}")
        self.producing[job.job_id] = produce
        beat = asyncio.create_task(self._heartbeat(job, progress), name=f"job-heartbeat-{job.job_id}")
        try:
            await asyncio.wait({produce, beat}, return_when=asyncio.FIRST_COMPLETED)
            if produce.cancelled():  # stop(): the job was cancelled
                raise LeaseLost()
            if produce.done():
                return produce.result()
            beat.result()  # a heartbeat that crashed (say, Redis unreachable) fails the job with its error
            raise LeaseLost()
        finally:
            for task in (produce, beat):
                task.cancel()
            await asyncio.gather(produce, beat, return_exceptions=True)
            self.producing.pop(job.job_id, None)

    async def _heartbeat(self, job: Job, progress: list[Batch]) -> None:
        """Publish the counts (at most every PROGRESS_INTERVAL_SECONDS) and renew the lease (every
        third of it); return when the record says another run owns the job or it was cancelled
        (checked on every beat, so a cancel made by another process stops this run within a beat)."""
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
            try:
                if fields:
                    if not await self.store.update(
                        job.job_id, only_if=JobStatus.running, only_attempt=job.attempt, **fields
                    ):
                        return
                    continue
                now = await self.store.get(job.job_id)  # a cancel made elsewhere stops this run within a beat
                if now is None or now.status is not JobStatus.running or now.attempt != job.attempt:
                    return
            except RedisError as exc:  # Redis away longer than the client's retries: try at the next beat
                log.warning("job heartbeat could not reach the store", extra={"error": repr(exc)})
                if "lease_until" in fields:
                    renewed -= self.lease_seconds  # renew at the next beat, not a third of a lease later

    async def _produce(
        self, job: Job, order: OrderInfo | None, progress: list[Batch], held: list[Finished | Build]
    ) -> Outcome:
        """Copy a finished identical archive, or run the engine into the job's file; the record fields of the end."""
        if order is None:  # queued by another process, or resumed: the order may have changed (open re-checks)
            order = await self.client.get_order(job.order_id, job.options.sort)
            chosen = selected(order, job.options)  # the chosen photos (a 422 if one is gone from the order)
            await self.store.update(
                job.job_id,
                only_attempt=job.attempt,
                order_name=order.name,
                total=files_total(chosen, job.options),
            )
        if job.wait_seconds:
            order = await wait_until_ready(self.client, order, WaitOptions(True, job.wait_seconds))

        async def leader_result(tag: str) -> Finished | None:
            return await self._copy_leader_job(job, tag)

        order = await self.archives.numbered(order, job.options)

        answer = await self.archives.find_or_build(
            order,
            job.options,
            tag=f"job:{job.job_id}",
            patience=JOB_PATIENCE_SECONDS,
            take_over=True,
            leader_result=leader_result,
        )
        held.append(answer)
        if isinstance(answer, Finished):
            if await self._adopt(job, answer):
                return _reused(answer.downloaded, answer.size)
            answer = await self.archives.rebuild(order, job.options, answer)  # gone meanwhile
            held.append(answer)
        batch = answer.batch
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
            size = await self._write(job, batch)
            return {
                "status": JobStatus.completed,
                "error": None,
                "downloaded": batch.downloaded,
                "failed": batch.failed,
                "failures": [f.as_dict() for f in batch.failures],
                "size": size,
            }
        finally:
            await batch.aclose()

    async def _copy_leader_job(self, job: Job, tag: str) -> Finished | None:
        """The leader was a job: its archive copied as this job's (only one where nothing failed, as
        the cache does: a retry must really retry), or None."""
        if not tag.startswith("job:"):
            return None
        source = await self.store.get(tag.removeprefix("job:"))
        if (
            source is None
            or source.status is not JobStatus.completed
            or source.failed != 0
            or source.is_expired(self.ttl_seconds)
            or not await self.results.copy(source.job_id, job.job_id)
        ):
            return None
        log.info("job reused an identical job's archive", extra={"source": source.job_id})
        return Finished("leader", "", source.total, source.downloaded, source.size or 0)

    async def _adopt(self, job: Job, found: Finished) -> bool:
        """Make a finished archive this job's result: already done for a leader job's, a copy otherwise."""
        if found.source == "leader":
            return True
        if found.path is not None:
            part = self.directory / part_name(job.job_id, job.attempt)
            try:
                await asyncio.to_thread(_share, found.path, part)
            except FileNotFoundError:  # evicted between the lookup and the link
                return False
            await self.results.publish(job.job_id, part)
            log.info("job reused a cached archive")
            return True
        if found.copy_to is not None and await self.results.adopt_shared(job.job_id, found.copy_to):
            log.info("job reused a shared cached archive")
            return True
        return False

    async def _write(self, job: Job, batch: Batch) -> int:
        """Archive bytes to `<id>.<attempt>.zip.part`, written in a thread (the archive's chunks are
        already 1 MiB each), then published as the job's result (a rename on disk, or an upload)."""
        job_id = job.job_id
        part = self.directory / part_name(job_id, job.attempt)
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


async def _acknowledge(ack: Ack) -> None:
    """The claim answered, so the message is done with; if the acknowledgement fails, the queue
    delivers the message again later and its claim fails harmlessly."""
    try:
        await ack()
    except (RedisError, OSError) as exc:
        log.warning("job message not acknowledged", extra={"error": repr(exc)})


def _reused(downloaded: int, size: int | None) -> Outcome:
    return {
        "status": JobStatus.completed,
        "error": None,
        "downloaded": downloaded,
        "failed": 0,
        "failures": [],
        "size": size,
    }


def _share(source: Path, target: Path) -> None:
    """The cached archive as the job's file too: a hard link (one copy on disk, however many jobs;
    it outlives the cache's eviction of its own name). Archives are never written in place, so
    sharing is safe; on another filesystem (or one without links) it is copied."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        shutil.copyfile(source, target)


def _open_for_write(path: Path) -> IO[bytes]:
    return open(path, "wb")  # closed by _finish_file, or by _write on error


def _finish_file(file: IO[bytes]) -> None:
    """fsync before the rename, so a `.zip` on disk is always a whole archive."""
    with file:
        file.flush()
        os.fsync(file.fileno())
