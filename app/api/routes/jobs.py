"""The async door: POST a job (202), poll its status, download the finished ZIP as a file.

The order is fetched before answering 202, so an unknown order is a 404 and a rejected key a 502
right away (not a job that fails a moment later), and the job knows its `total` from the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from app.api.deps import (
    CALLBACK_ERRORS,
    COMMON_ERRORS,
    CallbackDep,
    OrderIdPath,
    ServicesDep,
    SpendingOptionsDep,
    WaitDep,
    load_order,
    public_base_url,
)
from app.api.ranges import not_modified
from app.api.responses import FAILURES_SCHEMA, ZIP_CONTENT, ArchiveFileResponse, archive_headers, callbacks_for, error
from app.api.security import ServiceKey
from app.core.delivery.selection import choose
from app.jobs.records import JobExpired, PublicStatus, public_status

log = logging.getLogger("app.jobs")
router = APIRouter(tags=["jobs"], dependencies=[ServiceKey])

JobIdPath = Annotated[str, Path(description="The job id returned by POST /orders/{order_id}/jobs")]

UNKNOWN_JOB: dict[int | str, dict[str, Any]] = {
    404: error("No job with this id (or its record was deleted 7 days after it finished)")
}
AUTH_ERROR: dict[int | str, dict[str, Any]] = {401: COMMON_ERRORS[401]}


class JobAccepted(BaseModel):
    job_id: str
    status: PublicStatus
    status_url: str
    download_url: str


class JobFailureView(BaseModel):
    image_id: str
    name: str
    reason: str
    recovery: str


class JobWebhookView(BaseModel):
    callback_url: str
    webhook_id: str | None
    status: Literal["waiting_for_job", "pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None


class JobView(BaseModel):
    job_id: str
    order_id: str
    order_name: str | None
    status: PublicStatus = Field(
        description="`queued`, `running`, then the word its webhook says: `completed` (every image is in the ZIP), "
        "`completed_with_errors` (the ZIP lacks some: see `failures`), `failed` (no ZIP) or `cancelled`"
    )
    options: dict[str, Any]
    total: int
    downloaded: int
    failed: int
    error: str | None
    failures: list[JobFailureView]
    bytes: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str | None
    expired: bool
    status_url: str
    download_url: str
    attempt: int = Field(1, description="Run of the job: 2+ after a worker running it died (docs/operations.md, 'Running at scale')")
    webhook: JobWebhookView | None = None
    shares: list[dict[str, Any]] = Field(default_factory=list, description="Share links made of this job (tokens are not shown)")


@router.post(
    "/orders/{order_id}/jobs",
    summary="Prepare an order's ZIP in the background",
    description="Fetches the order, records a job and answers 202 at once. Poll `status_url` until `status` is "
    "`completed` or `completed_with_errors` (or `failed`), then GET `download_url`. Same options as `GET /orders/{order_id}/images`. "
    "Optionally pass `callback_url` (JSON body) or the `callbackUrl` header to get the result POSTed, signed, "
    "when the job ends (see `callbacks`).",
    status_code=202,
    response_model=JobAccepted,
    callbacks=callbacks_for("create_job"),
    responses={
        202: {"description": "Job accepted; `Location` is its status URL"},
        **COMMON_ERRORS,
        **CALLBACK_ERRORS,
        503: error(
            "Too many jobs queued or running, the service is shutting down, or the circuit breaker is open "
            "(Autoenhance failing); retry after Retry-After"
        ),
    },
)
async def create_job(
    order_id: OrderIdPath,
    options: SpendingOptionsDep,
    callback: CallbackDep,
    request: Request,
    services: ServicesDep,
    wait: WaitDep,
    share_expires_in: Annotated[
        int | None,
        Query(ge=60, le=90 * 24 * 3600, description="Also make a share link of the ZIP, working this many seconds "
              "from now; its URL is in the job's webhook (`share_urls`) and POST /jobs/{id}/share makes more"),
    ] = None,
) -> JSONResponse:
    order = await load_order(order_id, services, options.sort)
    options = choose(order, options)  # images= resolved to ids (422 for an unknown one) before the job exists
    job = await services.jobs.create(
        order,
        options,
        callback_url=callback,
        public_base_url=public_base_url(request) if callback else None,
        wait=wait,
        share_expires_in=share_expires_in,
    )
    body = JobAccepted(
        job_id=job.job_id,
        status=public_status(job.status, job.failed),
        status_url=job.status_url,
        download_url=job.download_url,
    )
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": job.status_url})


@router.get(
    "/jobs/{job_id}",
    summary="A job's status and progress",
    description="`downloaded` and `failed` advance while the job runs (refreshed about twice a second). A "
    "`completed_with_errors` job lacks some images: they are listed here and in `_download_report.txt` inside the "
    "ZIP. `status` uses the words of the job's webhook. "
    "`webhook` (null without a callback_url) tells how the job's callback is faring.",
    response_model=JobView,
    responses={**AUTH_ERROR, **UNKNOWN_JOB},
)
async def job_status(job_id: JobIdPath, services: ServicesDep) -> dict[str, Any]:
    manager = services.jobs
    job = await manager.get(job_id)
    return job.view(manager.ttl_seconds) | {"webhook": await services.webhooks.job_webhook_view(job)}


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a job (or delete a finished job's archive)",
    description="A queued or running job stops: its downloads end, its slot frees for other jobs, its partial "
    "file is removed, and its status becomes `cancelled` (its callback, if any, says `cancelled`). A finished "
    "job's archive is deleted and its status becomes `cancelled` (a download then answers 410). Repeating the "
    "DELETE answers the same record.",
    response_model=JobView,
    responses={
        **AUTH_ERROR,
        **UNKNOWN_JOB,
        409: error("The job changed status while being cancelled several times over; try again"),
    },
)
async def cancel_job(job_id: JobIdPath, services: ServicesDep) -> dict[str, Any]:
    manager = services.jobs
    job = await manager.cancel(job_id)
    return job.view(manager.ttl_seconds) | {"webhook": await services.webhooks.job_webhook_view(job)}


@router.head("/jobs/{job_id}/download", include_in_schema=False, response_class=FileResponse)
@router.get(
    "/jobs/{job_id}/download",
    summary="Download a finished job's ZIP",
    description="A plain file: Content-Length is exact, ETag and Last-Modified are stable (If-None-Match gives "
    "304), and `Range` (+ `If-Range`) requests resume an interrupted download. HEAD answers the same headers.",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The whole archive",
            "content": ZIP_CONTENT,
            "headers": {
                "X-Total-Images": {"schema": {"type": "integer"}, "description": "Files in the archive: photos x sets"},
                "X-Downloaded": {"schema": {"type": "integer"}, "description": "Images in the ZIP"},
                "X-Failed": {"schema": {"type": "integer"}, "description": "Images missing (see the report inside)"},
                "Content-Disposition": {"schema": {"type": "string"}, "description": "attachment with filename*"},
            },
        },
        206: {"description": "The requested byte range of the archive", "content": ZIP_CONTENT},
        307: {
            "description": "With S3_BUCKET set: a presigned URL of the archive in object storage (Range works there)"
        },
        **AUTH_ERROR,
        **UNKNOWN_JOB,
        409: error("The job is still queued or running (Retry-After says when to look again)"),
        410: error(
            "The archive expired (JOB_TTL_SECONDS after the job finished) and was deleted, or the job was cancelled"
        ),
        422: error(
            "The job failed: `detail` says why; `failures` lists each image that could not be downloaded",
            FAILURES_SCHEMA,
        ),
    },
)
async def download_job(job_id: JobIdPath, request: Request, services: ServicesDep) -> Response:
    job, path = await services.jobs.result(job_id)
    if isinstance(path, str):  # in object storage: the client fetches it from there
        services.archives.count_served()
        return RedirectResponse(path, status_code=307, headers={"Cache-Control": "no-store"})
    headers = archive_headers(job.order_name, job.order_id, job.total, job.downloaded, job.failed)
    try:  # stat now, so ETag and Last-Modified are known for If-None-Match (the file never changes)
        stat = await asyncio.to_thread(os.stat, path)
    except FileNotFoundError as exc:
        raise JobExpired("The job's archive was deleted; create a new job") from exc
    response = ArchiveFileResponse(path, media_type="application/zip", headers=headers, stat_result=stat)
    if not_modified(request, response):
        return Response(status_code=304, headers={k: response.headers[k] for k in ("etag", "last-modified")})
    if "range" not in request.headers and request.method == "GET":  # whole downloads, not resumed pieces
        services.archives.count_served(job.size or 0, partial=job.failed > 0)
    return response
