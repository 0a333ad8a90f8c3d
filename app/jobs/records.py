"""A job as callers see it: its status, its record, and the errors its routes answer with."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from app.core.models import BatchOptions
from app.errors import Conflict, Gone, NotFound, Unavailable, Unprocessable

RECORD_RETENTION_SECONDS = 7 * 24 * 3600


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    """Finished with an archive; shown as `completed_with_errors` when some images are missing (`public_status`)."""
    failed = "failed"
    cancelled = "cancelled"
    """Stopped by DELETE /jobs/{id}: its downloads stopped, its partial or finished archive deleted."""

    @classmethod
    def _missing_(cls, value: object) -> JobStatus | None:
        """Records written before the status took the webhook's word still load."""
        return LEGACY_STATUSES.get(str(value))


LEGACY_STATUSES = {"complete": JobStatus.completed}
"""Stored status values of earlier releases, and the status each now means."""

FINAL_STATUSES = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)

PublicStatus = Literal["queued", "running", "completed", "completed_with_errors", "failed", "cancelled"]


def public_status(status: JobStatus, failed: int) -> PublicStatus:
    """The word a poll (GET /jobs/{id}) and the job's webhook both say: one vocabulary for both."""
    if status is JobStatus.completed and failed:
        return "completed_with_errors"
    return status.value  # type: ignore[return-value]  # each other member's value is in PublicStatus


# -- errors (mapped to JSON by the app's ServiceError handler) -------------------------------------


class JobNotFound(NotFound):
    message = "No such job (unknown id, or its record was deleted after 7 days)"


class JobNotReady(Conflict):
    pass


class JobExpired(Gone):
    pass


class ShareNotFound(NotFound):
    message = "This is not a working share link (check that it was copied whole)"


class ShareGone(Gone):
    """An expired, revoked or emptied share link: 410 with a plain sentence for whoever opened it."""


class JobCancelled(Gone):
    message = "The job was cancelled and its archive deleted; create a new job"


class JobFailed(Unprocessable):
    """A failed job has no archive: 422 with the reason and each image's failure."""

    def __init__(self, message: str, failures: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "failures": self.failures}


class TooManyJobs(Unavailable):
    message = "Too many jobs are queued or running; try again later"


class JobListener(Protocol):
    """Told when a job reaches its final status (the webhooks facade: it queues the job's callback).

    A Protocol because the webhooks sit above the jobs: the job system calls them through this,
    given at construction, without importing them."""

    async def job_finished(self, job: Job) -> None: ...


# -- the record -------------------------------------------------------------------------------------


def iso(timestamp: float | None) -> str | None:
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
    callback_url: str | None = None
    """Where the job's signed completion webhook goes (app/webhooks), if anywhere."""
    public_base_url: str | None = None
    """The service's absolute base URL as the creator saw it, for the links in that webhook."""
    attempt: int = 1
    """Which run of the job this is: a worker that died mid-job makes the next run attempt + 1."""
    handed_back: int = 0
    """Runs a departing worker handed back (SIGTERM, a rolling restart): not failures, so they do not
    count toward JOB_MAX_ATTEMPTS (app/jobs/supervisor.py)."""
    lease_until: float | None = None
    """Running: the runner's heartbeat promise; past it, the runner is presumed dead. Queued (REDIS_URL): when
    the job's message is sent again if no runner has claimed it (app/jobs/supervisor.py)."""
    runner: str | None = None
    """`<host>:<pid>` of the process running (or that last ran) the job; on a single box also of the
    process whose queue holds a queued job, so a neighbour can take it over if that process dies."""
    wait_seconds: float | None = None
    """wait=true: the run first polls the order up to this long until no image is processing (app/core/wait.py)."""
    shares: tuple[dict[str, Any], ...] = ()
    """Share links made of this job: {"share_id", "expires_at", "revoked_at"} (app/core/delivery/sharing.py)."""

    def active_shares(self, now: float | None = None) -> list[dict[str, Any]]:
        moment = time.time() if now is None else now
        return [s for s in self.shares if s.get("revoked_at") is None and s["expires_at"] > moment]

    @property
    def status_url(self) -> str:
        return f"/v1/jobs/{self.job_id}"

    @property
    def download_url(self) -> str:
        return f"/v1/jobs/{self.job_id}/download"

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
            "status": public_status(self.status, self.failed),
            "options": self.options.as_dict(),
            "total": self.total,
            "downloaded": self.downloaded,
            "failed": self.failed,
            "error": self.error,
            "failures": list(self.failures),
            "bytes": self.size,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "expires_at": iso(self.expires_at(ttl_seconds)),
            "expired": self.is_expired(ttl_seconds),
            "status_url": self.status_url,
            "download_url": self.download_url,
            "attempt": self.attempt,
            "shares": [
                {"share_id": s["share_id"], "expires_at": iso(s["expires_at"]), "revoked": s.get("revoked_at") is not None}
                for s in self.shares
            ],
        }
