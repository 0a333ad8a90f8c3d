"""The JSON a callback receiver gets, as one pydantic model: the OpenAPI `callbacks` schema and the
bytes we send come from the same class, so the documented contract cannot drift from the wire.

Field names follow the peer service of seed 002 where they overlap (status values, `errors` capped
at 20, `duration_seconds`), because agent platforms match callbacks against the declared schema.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from app.jobs.records import Job, iso, public_status

MAX_ERRORS = 20

CallbackStatus = Literal["completed", "completed_with_errors", "failed", "cancelled"]
"""The final values of `PublicStatus` (app/jobs/records.py): a poll of the job says the same word."""


class JobCallback(BaseModel):
    """POSTed to `callback_url` once a job ends (signed; see the webhook-* headers)."""

    event: Literal["job.completed", "job.failed", "job.cancelled", "watch.failed"] = Field(
        description="`job.completed` (status completed or completed_with_errors), `job.failed`, `job.cancelled` "
        "(DELETE /jobs/{id} stopped it), or "
        "`watch.failed` when a watched order finished but its job could not be started (then job_id is null)"
    )
    job_id: str | None = Field(description="The job's id (null only for watch.failed)")
    watch_id: str | None = Field(default=None, description="The watch that started the job, if any")
    order_id: str
    order_name: str | None = None
    status: CallbackStatus = Field(
        description="`completed`: every image is in the ZIP; `completed_with_errors`: the ZIP lacks some "
        "(see errors); `failed`: no ZIP; `cancelled`: stopped by a DELETE, no ZIP"
    )
    total: int = Field(description="Files in the archive: photos x sets")
    downloaded: int = Field(description="Images in the ZIP")
    failed: int = Field(description="Images that could not be downloaded")
    duration_seconds: float = Field(description="From job creation to its end, queue time included")
    download_url: str | None = Field(description="Absolute URL of the ZIP (null when failed); expires with the job")
    status_url: str | None = Field(description="Absolute URL of the job's status")
    error: str | None = Field(default=None, description="Why the job failed (only when status is failed)")
    errors: list[str] = Field(description=f"The first {MAX_ERRORS} per-image errors, as 'name: reason'")
    finished_at: str | None = Field(description="ISO 8601 UTC")
    share_urls: list[str] = Field(
        default_factory=list,
        description="Share links of the ZIP that work now (made with share_expires_in, or POST /jobs/{id}/share): "
        "anyone can open them without a key until they expire",
    )


EVENTS: dict[str, Literal["job.failed", "job.cancelled"]] = {"failed": "job.failed", "cancelled": "job.cancelled"}


def callback_status(job: Job) -> CallbackStatus:
    """The ended job's status, in the word a poll of it says (app/jobs/records.py `public_status`)."""
    status = public_status(job.status, job.failed)
    if status == "cancelled" or status == "failed" or status == "completed_with_errors":
        return status
    return "completed"


def job_callback(
    job: Job, base_url: str, watch_id: str | None = None, share_tokens: list[str] | None = None
) -> JobCallback:
    """The payload for a finished job; `base_url` makes its links absolute."""
    status = callback_status(job)
    base = base_url.rstrip("/")
    end = job.finished_at if job.finished_at is not None else time.time()
    errors = [f"{f.get('name') or f.get('image_id')}: {f.get('reason')}" for f in job.failures[:MAX_ERRORS]]
    return JobCallback(
        event=EVENTS.get(status, "job.completed"),
        job_id=job.job_id,
        watch_id=watch_id,
        order_id=job.order_id,
        order_name=job.order_name,
        status=status,
        total=job.total,
        downloaded=job.downloaded,
        failed=job.failed,
        duration_seconds=round(max(0.0, end - job.created_at), 3),
        download_url=None if status in ("failed", "cancelled") else base + job.download_url,
        status_url=base + job.status_url,
        error=job.error if status in ("failed", "cancelled") else None,
        errors=errors,
        finished_at=iso(end),
        share_urls=[] if status in ("failed", "cancelled") else [f"{base}/share/{t}" for t in share_tokens or ()],
    )


def watch_failed(order_id: str, watch_id: str, error: str, started: float) -> JobCallback:
    """A watched order finished processing but no job could be made of it (empty order, upstream down...)."""
    now = time.time()
    return JobCallback(
        event="watch.failed",
        job_id=None,
        watch_id=watch_id,
        order_id=order_id,
        status="failed",
        total=0,
        downloaded=0,
        failed=0,
        duration_seconds=round(max(0.0, now - started), 3),
        download_url=None,
        status_url=None,
        error=error,
        errors=[],
        finished_at=iso(now),
    )
