"""Downloads: /enhanced, /preview and /original answer a 302 to a short-lived /assets/<token> URL.

The asset URL plays S3/CloudFront: exact bytes with Content-Length, S3-style XML errors. Pillow
renditions are cached (simulator/renders.py); synthetic images stream their bytes as-is.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from simulator import imaging, synthetic
from simulator.errors import ApiError, NotFound, s3_error
from simulator.records import ImageRecord
from simulator.route_helpers import asset_base, public_base, seconds_header, sim, too_many
from simulator.state import SimulatorState
from simulator.streaming import AssetStream
from simulator.validation import DOWNLOAD_QUERY, parse_fields

NOT_READY_MESSAGE = "Image not processed yet"
SIZE_WIDTHS = {"small": 640, "large": 1280, "big": None}


def _render_spec(
    image: ImageRecord, query: dict[str, Any], *, enhanced: bool, preview: bool, dev: bool
) -> imaging.RenderSpec:
    max_width = query.get("max_width") or SIZE_WIDTHS.get(query.get("size") or "big")
    return imaging.RenderSpec(
        enhanced=enhanced and image.settings.get("enhance") is not False,
        format=query.get("format") or "jpeg",
        quality=query.get("quality"),
        preview=preview,
        max_width=max_width,
        scale=query.get("scale"),
        watermark=bool(query.get("watermark")) or dev,
        enhance_type=image.settings.get("enhance_type"),
        dpi=query.get("dpi"),
    )


def _original_content_type(image: ImageRecord) -> str:
    declared = image.uploaded_content_type or image.content_type or ""
    if declared.startswith("image/"):
        return declared
    if image.sniffed_format in imaging.CONTENT_TYPES:
        return imaging.CONTENT_TYPES[image.sniffed_format]
    guessed, _ = mimetypes.guess_type(image.image_name or "")
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


async def _download(request: Request, kind: str) -> Response:
    """The shared body of /enhanced, /preview and /original: checks, faults, then a 302."""
    state = sim(request)
    query = parse_fields("query", request.query_params, DOWNLOAD_QUERY)
    image = state.get_image(request.path_params["image_id"])
    if not state.try_start_download():
        return too_many(1)
    try:
        if state.download_latency > 0:
            await asyncio.sleep(state.download_latency)
        if kind == "enhanced" and (early := await _download_faults(request, image)) is not None:
            return early
        dev = request.headers.get("x-dev-mode", "").lower() == "true"
        if kind == "original":
            spec = _original_spec(state, image, query, dev)
        else:
            spec = _enhanced_spec(state, image, query, dev, legacy_preview=kind == "preview")
        content_type = imaging.CONTENT_TYPES[spec.format] if spec else _original_content_type(image)
        token = state.grant(image, "original" if kind == "original" else "enhanced", spec, content_type)
        return RedirectResponse(f"{asset_base(request)}/assets/{token}", status_code=302)
    finally:
        state.end_download()


def _original_spec(
    state: SimulatorState, image: ImageRecord, query: dict[str, Any], dev: bool
) -> imaging.RenderSpec | None:
    """None means the uploaded bytes untouched: no rendering option asked, or a synthetic image."""
    if image.data is None and image.synthetic_size is None:
        raise NotFound("Image not uploaded yet", {"status": state.effective_status(image)[0]})
    preview = bool(query.get("preview", False))
    asked = preview or any(k in query for k in ("format", "quality", "max_width", "scale", "size", "watermark", "dpi"))
    if image.synthetic_size is not None or not asked:
        return None
    return _render_spec(image, query, enhanced=False, preview=preview, dev=dev)


def _enhanced_spec(
    state: SimulatorState, image: ImageRecord, query: dict[str, Any], dev: bool, *, legacy_preview: bool
) -> imaging.RenderSpec:
    """Refuse unprocessed images; a full-size (preview=false) download costs a credit unless dev mode."""
    status, _ = state.effective_status(image)
    not_ready = status == "processed" and not legacy_preview
    if not_ready and state.faults.take("not_ready", image_id=image.image_id, order_id=image.order_id):
        status = "processing"
    if status != "processed":
        raise NotFound(NOT_READY_MESSAGE, {"status": status})
    preview = legacy_preview or bool(query.get("preview", True))
    if not preview and not dev:
        state.charge(image)
    return _render_spec(image, query, enhanced=True, preview=preview, dev=dev)


async def _download_faults(request: Request, image: ImageRecord) -> Response | None:
    state = sim(request)
    target = {"image_id": image.image_id, "order_id": image.order_id}
    if fault := state.faults.take("latency", **target):
        await asyncio.sleep(fault.seconds)
    if fault := state.faults.take("status", **target):
        headers = {"Retry-After": seconds_header(fault.retry_after)} if fault.retry_after is not None else None
        return ApiError(fault.status, headers=headers).response()
    if fault := state.faults.take("rate_limit", **target):
        state.count("rate_limited")
        return too_many(fault.retry_after)
    if state.faults.take("redirect_loop", **target):
        loop = f"{public_base(request)}/assets/loop/{image.image_id}"
        return RedirectResponse(f"{loop}?{request.url.query}" if request.url.query else loop, status_code=302)
    return None


async def enhanced(request: Request) -> Response:
    return await _download(request, "enhanced")


async def preview(request: Request) -> Response:
    return await _download(request, "preview")


async def original(request: Request) -> Response:
    return await _download(request, "original")


async def redirect_loop(request: Request) -> Response:
    target = f"{public_base(request)}/v3/images/{request.path_params['image_id']}/enhanced"
    return RedirectResponse(f"{target}?{request.url.query}" if request.url.query else target, status_code=302)


async def asset(request: Request) -> Response:
    """Serve a granted rendition as S3/CloudFront would: bytes, Content-Length, XML errors."""
    state = sim(request)
    if "x-api-key" in request.headers:
        state.count("asset_requests_with_api_key")
    token = request.path_params["token"]
    grant = state.lookup_grant(token)
    if grant is None:
        return s3_error(403, "AccessDenied", "Access Denied", f"/assets/{token}")
    if grant.expires_at < time.time():
        return s3_error(403, "AccessDenied", "Request has expired", f"/assets/{token}")
    image = state.images.get(grant.image_id)
    if image is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.", f"/assets/{token}")
    if not state.try_start_download():
        return too_many(1)
    handed_over = False
    try:
        target = {"image_id": image.image_id, "order_id": image.order_id}
        if state.faults.take("expired_asset", **target):
            return s3_error(403, "AccessDenied", "Request has expired", f"/assets/{token}")
        if state.faults.take("asset_404", **target):
            return s3_error(404, "NoSuchKey", "The specified key does not exist.", f"/assets/{token}")
        if image.synthetic_size is not None:
            size = image.synthetic_size
            chunks: Any = synthetic.iter_chunks(image.image_id, size)
        else:
            data = image.data or b""
            if grant.spec is not None:
                try:
                    data, _ = await state.renderer.render(data, grant.spec)
                except imaging.ImageDecodeError:
                    return s3_error(500, "InternalError", "The source image could not be decoded.")
            size = len(data)
            chunks = (data[i : i + synthetic.CHUNK_SIZE] for i in range(0, size, synthetic.CHUNK_SIZE))
        state.count_asset(image.image_id)
        if altered := state.faults.take("altered_bytes", **target):
            chunks = _altered(chunks, altered.after_bytes)
        stall = state.faults.take("stall", **target)
        truncate = state.faults.take("truncate", **target)
        stream = AssetStream(
            chunks,
            size,
            grant.content_type,
            on_close=lambda sent: _asset_closed(state, sent),
            stall_at=stall.after_bytes if stall else None,
            stall_seconds=stall.seconds if stall else 0.0,
            truncate_at=truncate.after_bytes if truncate else None,
            headers={"Cache-Control": "private, max-age=600", "ETag": f'"{token[:16]}"'},
        )
        handed_over = True
        return stream  # type: ignore[return-value]
    finally:
        if not handed_over:
            state.end_download()


def _altered(chunks: Any, at: int) -> Any:
    """The same bytes with the one at offset `at` inverted (nothing if the asset is shorter)."""
    offset = 0
    for chunk in chunks:
        if offset <= at < offset + len(chunk):
            i = at - offset
            chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
        offset += len(chunk)
        yield chunk


def _asset_closed(state: SimulatorState, sent: int) -> None:
    state.count("asset_bytes", sent)
    state.end_download()
