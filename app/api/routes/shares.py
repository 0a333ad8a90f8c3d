"""Share links: make and revoke them (service key), and what anyone holding one can open (no key).

`POST /jobs/{id}/share` makes a signed, expiring link (app/core/delivery/sharing.py) to a finished job's ZIP.
The link opens a plain download page (the order's name as text, thumbnails of the photos, one
Download button) and the ZIP itself, with Range; with S3_BUCKET the download redirects to a presigned
URL of the object. Expired, revoked or emptied: 410 with a plain sentence, since whoever opens a
shared link is a person with a browser, not an API client.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from app.api.deps import ServicesDep, public_base_url
from app.api.ranges import not_modified
from app.api.responses import ArchiveFileResponse, archive_headers, error
from app.api.security import ServiceKey, content_security_policy
from app.core.delivery.selection import selected
from app.core.delivery.thumbnails import thumbnail_bytes
from app.errors import ServiceError
from app.jobs.records import JobExpired, ShareGone, ShareNotFound, iso

log = logging.getLogger("app.shares")
router = APIRouter(tags=["jobs"], dependencies=[ServiceKey])
# What a link opens is a page for people (like `/`), at an address that must outlive API versions: out of
# the OpenAPI document, which describes the versioned API (making and revoking links is in it, under /v1).
public = APIRouter(tags=["share"], include_in_schema=False)

DEFAULT_EXPIRES = 7 * 24 * 3600
MAX_EXPIRES = 90 * 24 * 3600
THUMBS_ON_PAGE = 24
JobIdPath = Annotated[str, Path(description="The job id returned by POST /orders/{order_id}/jobs")]
TokenPath = Annotated[str, Path(description="The share link's token", max_length=200)]
KEY_ERRORS: dict[int | str, dict[str, Any]] = {401: error("SERVICE_API_KEY is set and X-API-Key is missing or wrong")}


@router.post(
    "/jobs/{job_id}/share",
    summary="Make a share link of a finished job's ZIP",
    description="A signed link anyone can open without the service key, until it expires (`expires_in` "
    "seconds, default 7 days) or is revoked: a plain download page, then the ZIP (Range works).",
    status_code=201,
    responses={
        **KEY_ERRORS,
        404: error("No job with this id"),
        409: error("The job is still queued or running"),
        410: error("The job's archive expired or the job was cancelled"),
        422: error("The job failed: there is nothing to share"),
    },
)
async def create_share(
    job_id: JobIdPath,
    request: Request,
    services: ServicesDep,
    expires_in: Annotated[int, Query(ge=60, le=MAX_EXPIRES, description="Seconds the link works")] = DEFAULT_EXPIRES,
) -> dict[str, Any]:
    job, share, token = await services.jobs.share(job_id, expires_in)
    base = services.settings.public_base_url or public_base_url(request)
    return {
        "job_id": job.job_id,
        "share_id": share["share_id"],
        "url": f"{base.rstrip('/')}/share/{token}",
        "expires_at": iso(share["expires_at"]),
    }


@router.delete("/jobs/{job_id}/share/{share_id}", summary="Revoke one share link", responses={**KEY_ERRORS, 404: error("No such job or link")})
async def revoke_share(job_id: JobIdPath, share_id: str, services: ServicesDep) -> dict[str, Any]:
    job = await services.jobs.revoke(job_id, share_id)
    return {"job_id": job.job_id, "revoked": [share_id]}


@router.delete("/jobs/{job_id}/share", summary="Revoke every share link of a job", responses={**KEY_ERRORS, 404: error("No such job")})
async def revoke_shares(job_id: JobIdPath, services: ServicesDep) -> dict[str, Any]:
    job = await services.jobs.revoke(job_id, None)
    return {"job_id": job.job_id, "revoked": [s["share_id"] for s in job.shares]}


def _plain(exc: ServiceError) -> PlainTextResponse:
    return PlainTextResponse(exc.message + "\n", status_code=exc.status_code, headers={"Cache-Control": "no-store"})


PLAIN = {"text/plain": {"schema": {"type": "string"}}}
LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not a link this server signed (mangled or forged)", "content": PLAIN},
    410: {"description": "The link expired or was withdrawn, or its ZIP is gone", "content": PLAIN},
}


@public.get(
    "/share/{token}",
    summary="A shared download's page",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **LINK_ERRORS},
)
async def share_page(token: TokenPath, services: ServicesDep) -> Response:
    try:
        job, _, _ = await services.jobs.shared(token)
    except (ShareGone, ShareNotFound) as exc:
        return _plain(exc)
    title = html.escape(job.order_name or "Photos")
    thumbs = ""
    try:
        order = selected(await services.client.get_order(job.order_id), job.options)
        signer = services.jobs.signer
        items = [
            f'<li><img src="{html.escape(token)}/thumbnails/{html.escape(image.image_id)}/'
            f'{signer.tag(token + image.image_id)}" alt="" width="160" height="120">'
            f'<span>{html.escape(image.name or "")}</span></li>'
            for image in order.images[:THUMBS_ON_PAGE]
        ]
        thumbs = f'<ul class="thumbs" aria-label="Photos">{"".join(items)}</ul>'
    except ServiceError:  # Autoenhance unreachable: the page still offers the download
        log.warning("share page without thumbnails", extra={"job_id": job.job_id})
    size = f" ({(job.size or 0) / 1_000_000:.1f} MB)" if job.size else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title><link rel="icon" href="../static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="../static/style.css"></head>
<body><main class="card"><h1>{title}</h1>
<p class="muted">{job.downloaded} photo{'s' * (job.downloaded != 1)}{size}</p>
{thumbs}
<p><a class="btn btn-primary" id="download" href="{html.escape(token)}/download" download>Download</a></p>
</main></body></html>"""
    headers = {"Content-Security-Policy": content_security_policy(), "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(body, headers=headers)


@public.head("/share/{token}/download")
@public.get(
    "/share/{token}/download",
    summary="A shared download's ZIP (Range works)",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The archive"},
        206: {"content": {"application/zip": {}}, "description": "The requested byte range"},
        304: {"description": "If-None-Match names this archive"},
        307: {"description": "With S3_BUCKET: a presigned URL of the archive"},
        416: {"description": "The range is past the end"},
        **LINK_ERRORS,
    },
)
async def share_download(token: TokenPath, request: Request, services: ServicesDep) -> Response:
    try:
        job, location, _ = await services.jobs.shared(token)
    except (ShareGone, ShareNotFound) as exc:
        return _plain(exc)
    if isinstance(location, str):  # in object storage: the presigned URL serves it (and Range)
        return RedirectResponse(location, status_code=307, headers={"Cache-Control": "no-store"})
    headers = archive_headers(job.order_name, job.order_id, job.total, job.downloaded, job.failed)
    try:
        stat = await asyncio.to_thread(os.stat, location)
    except FileNotFoundError:
        return _plain(JobExpired("This link no longer works: the download it pointed to was deleted."))
    response = ArchiveFileResponse(location, media_type="application/zip", headers=headers, stat_result=stat)
    if not_modified(request, response):
        return Response(status_code=304, headers={k: response.headers[k] for k in ("etag", "last-modified")})
    return response


@public.get("/share/{token}/thumbnails/{image_id}/{tag}")
async def share_thumbnail(token: TokenPath, image_id: str, tag: str, services: ServicesDep) -> Response:
    """Only the photos the page listed (the tag signs token + image id), only while the link works."""
    if not services.jobs.signer.check_tag(token + image_id, tag):
        return PlainTextResponse("Not found\n", status_code=404)
    try:
        await services.jobs.shared(token)
    except (ShareGone, ShareNotFound) as exc:
        return _plain(exc)
    body = await thumbnail_bytes(services.client, services.settings.spool_dir, image_id)
    if body is None:
        return PlainTextResponse("No preview of this photo yet\n", status_code=404)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
