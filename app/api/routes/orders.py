"""Create Autoenhance orders from uploaded photos or the bundled samples (admin only: spends credits)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from PIL import Image, UnidentifiedImageError

from app.api.deps import ServicesDep
from app.api.responses import error
from app.api.security import AdminToken
from app.errors import InvalidUpload, PayloadTooLarge, ServiceError, UpstreamBadResponse

log = logging.getLogger("app.orders")
router = APIRouter(tags=["orders"], dependencies=[AdminToken])

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "sample_images"
# Pillow's sniffed format -> the MIME type Autoenhance is told. Names and browser types are not trusted.
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}

ORDER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("ADMIN_TOKEN is set and X-Admin-Token is missing or wrong"),
    403: error("Live mode without ADMIN_TOKEN: order creation is disabled"),
    502: error("Autoenhance refused or failed the order creation"),
}


def sniff(data: bytes) -> str | None:
    """The MIME type of an accepted photo format, judged by its bytes; None if not one."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return ACCEPTED.get(img.format or "")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


async def _create(services: ServicesDep, name: str, photos: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    client = services.client
    order = await client.create_order(name)
    order_id = str(order.get("order_id") or order.get("id") or "")
    if not order_id:
        raise UpstreamBadResponse("Autoenhance created an order without an id")
    for filename, data, content_type in photos:
        image = await client.create_image(order_id, filename, content_type)
        url = image.get("upload_url") or image.get("s3PutObjectUrl")
        if not url:
            raise UpstreamBadResponse("Autoenhance returned no upload URL for an image")
        await client.upload(str(url), data, content_type)
    log.info("order created", extra={"order_id": order_id, "images": len(photos)})
    return {"order_id": order_id, "name": name, "images": len(photos)}


@router.post(
    "/api/create-sample-order", summary="Create an order from the bundled sample photos", responses=ORDER_ERRORS
)
async def create_sample_order(services: ServicesDep) -> dict[str, Any]:
    photos = [(p.name, p.read_bytes(), "image/jpeg") for p in sorted(SAMPLE_DIR.glob("*.jpg"))]
    if not photos:
        raise ServiceError("No sample images are bundled with this installation")
    return await _create(services, "Sample order", photos)


@router.post(
    "/api/create-order",
    summary="Create an order from uploaded photos",
    responses={
        **ORDER_ERRORS,
        413: error("A photo is over MAX_UPLOAD_BYTES"),
        422: error("No photos, too many photos, or a file that is not a JPEG/PNG/WebP/TIFF image"),
    },
)
async def create_order(
    services: ServicesDep,
    files: Annotated[list[UploadFile], File(description="Photos (JPEG, PNG, WebP or TIFF, sniffed from the bytes)")],
    name: str | None = None,
) -> dict[str, Any]:
    settings = services.settings
    if not files:
        raise InvalidUpload("Send at least one photo in the 'files' field")
    if len(files) > settings.max_upload_files:
        raise InvalidUpload(
            f"Too many photos: {len(files)} sent, at most {settings.max_upload_files} (MAX_UPLOAD_FILES)"
        )
    photos = []
    for upload in files:
        data = await upload.read(settings.max_upload_bytes + 1)
        label = (upload.filename or "photo")[:100]
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"'{label}' is over the {settings.max_upload_bytes} byte limit (MAX_UPLOAD_BYTES)")
        content_type = sniff(data)
        if content_type is None:
            raise InvalidUpload(f"'{label}' is not a JPEG, PNG, WebP or TIFF image")
        photos.append((Path(label).name or "photo", data, content_type))
    return await _create(services, (name or "Uploaded order")[:200], photos)
