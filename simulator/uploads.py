"""The fake S3 behind `upload_url` and the legacy `s3PutObjectUrl`: PUT raw bytes, 200 empty body."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from simulator.errors import s3_error
from simulator.route_helpers import sim


async def upload(request: Request) -> Response:
    """PUT to `upload_url`: any Content-Type."""
    return await _put_image(request, token=request.query_params.get("token"), check_type=False)


async def s3_upload(request: Request) -> Response:
    """PUT to the legacy `s3PutObjectUrl`: Content-Type is part of the signature."""
    return await _put_image(request, token=request.query_params.get("X-Amz-Signature"), check_type=True)


async def _put_image(request: Request, *, token: str | None, check_type: bool) -> Response:
    state = sim(request)
    image = state.images.get(request.path_params["image_id"])
    if image is None:
        return s3_error(403, "AccessDenied", "Access Denied", request.url.path)
    if token != image.upload_token:
        return s3_error(403, "SignatureDoesNotMatch", _SIG_MESSAGE, request.url.path)
    sent_type = request.headers.get("content-type")
    if (
        check_type
        and image.content_type
        and (sent_type or "").split(";")[0].strip().lower() != image.content_type.lower()
    ):
        return s3_error(403, "SignatureDoesNotMatch", _SIG_MESSAGE, request.url.path)
    data = await _capped_body(request, state.max_upload_bytes)
    if data is None:
        return s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", request.url.path)
    state.upload(image.image_id, data, sent_type)
    return Response(b"", 200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})  # noqa: S324 - S3's ETag


async def upload_bracket(request: Request) -> Response:
    state = sim(request)
    bracket = state.brackets.get(request.path_params["bracket_id"])
    if bracket is None or request.query_params.get("token") != bracket.upload_token:
        return s3_error(403, "AccessDenied", "Access Denied", request.url.path)
    state.upload_bracket(bracket.bracket_id, await request.body())
    return Response(b"", 200)


async def _capped_body(request: Request, limit: int | None) -> bytes | None:
    """The body, or None once it passes `limit` (read no further: S3 refuses an oversized PUT too)."""
    if limit is None:
        return await request.body()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            return None
    return bytes(body)


_SIG_MESSAGE = "The request signature we calculated does not match the signature you provided."
