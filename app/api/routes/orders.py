"""Create Autoenhance orders from uploaded photos or the bundled samples (admin only: spends credits)."""

from __future__ import annotations

import asyncio
import io
import logging
import warnings
import weakref
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from PIL import Image, UnidentifiedImageError

from app.api.deps import ServicesDep
from app.api.responses import error
from app.api.security import AdminToken
from app.core.upstream.client import upload_url_of
from app.core.upstream.enhancement import EnhancementSettings, EnhanceType, Fire, Grass, Photographer, Sky, Tvs
from app.errors import InvalidUpload, PayloadTooLarge, ServiceError, UpstreamBadResponse

log = logging.getLogger("app.orders")
router = APIRouter(tags=["orders"], dependencies=[AdminToken])

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "simulator" / "sample_images"  # installed beside app/
# Pillow's sniffed format -> the MIME type Autoenhance is told. Names and browser types are not trusted.
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}

ORDER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("ADMIN_TOKEN is set and X-Admin-Token is missing or wrong"),
    403: error("Live mode without ADMIN_TOKEN: order creation is disabled"),
    502: error("Autoenhance refused or failed the order creation"),
}


_DECODE_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _decode_slot() -> asyncio.Semaphore:
    """One upload decoded at a time per process (per event loop): a PNG at the pixel limit costs
    about 4 bytes a pixel while it is checked, and concurrent uploads must not multiply that."""
    loop = asyncio.get_running_loop()
    slot = _DECODE_SLOTS.get(loop)
    if slot is None:
        slot = _DECODE_SLOTS[loop] = asyncio.Semaphore(1)
    return slot


def pixel_refusal(data: bytes, limit: int, label: str) -> str | None:
    """Why a photo is too large, judged from its header alone (Pillow reads the size on open and
    the pixels only on load), or None. Cheap: call it before anything decodes the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError:  # Pillow's own ceiling (far above ours): refused on open
        return f"'{label}' has far more than {limit:,} pixels (MAX_UPLOAD_PIXELS)"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None  # not an image at all: sniff() says so
    if width * height > limit:
        return (
            f"'{label}' is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"photos may have at most {limit:,} pixels (MAX_UPLOAD_PIXELS)"
        )
    return None


def sniff(data: bytes) -> str | None:
    """The MIME type of an accepted photo format, judged by decoding all of it; None if not one.

    The first bytes are not enough: a JPEG header followed by garbage would be uploaded and paid
    for. So the whole image is decoded (a JPEG at 1/8 scale: every scan is still read, in a fraction
    of the memory), and a JPEG must end its scans with the end-of-image marker: libjpeg decodes
    junk scan data without complaint (Pillow does not surface its warnings), so decoding alone
    would pass a header followed by any bytes. CPU-bound: call it in a thread, after pixel_refusal
    and under _decode_slot (its size is not checked here).
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            mime = ACCEPTED.get(img.format or "")
            if mime is None:
                return None
            if img.format == "JPEG" and data.rfind(b"\xff\xd9") < data.find(b"\xff\xda"):
                return None  # no end-of-image marker after the first scan: cut short or padded with junk
            img.verify()  # the container's own checks (PNG chunk checksums); the image must be reopened after
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            return mime
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


async def _create(
    services: ServicesDep,
    name: str,
    photos: list[tuple[str, bytes, str]],
    settings: EnhancementSettings | None = None,
) -> dict[str, Any]:
    client = services.client
    chosen = settings.body() if settings is not None else {}
    order = await client.create_order(name)
    order_id = str(order.get("order_id") or order.get("id") or "")
    if not order_id:
        raise UpstreamBadResponse("Autoenhance created an order without an id")
    for filename, data, content_type in photos:
        image = await client.create_image(order_id, filename, content_type, chosen)
        url = upload_url_of(image)  # its name depends on the API version served
        if not url:
            raise UpstreamBadResponse("Autoenhance returned no upload URL for an image")
        await client.upload(url, data, content_type)
    log.info("order created", extra={"order_id": order_id, "images": len(photos)})
    return {"order_id": order_id, "name": name, "images": len(photos), "settings": chosen}


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
        422: error(
            "No photos, too many photos, a photo over MAX_UPLOAD_PIXELS (read from its header, before decoding), "
            "a file that is not a JPEG/PNG/WebP/TIFF image, or an enhancement setting Autoenhance does not offer "
            "(checked before anything is uploaded)"
        ),
    },
)
async def create_order(
    services: ServicesDep,
    files: Annotated[list[UploadFile], File(description="Photos (JPEG, PNG, WebP or TIFF, sniffed from the bytes)")],
    name: str | None = None,
    enhance_type: Annotated[EnhanceType | None, Form(description="warm, neutral, modern (AI 4+); property...")] = None,
    sky: Annotated[Sky | None, Form(description="Sky replacement (restage.sky); AS_SHOT keeps the sky")] = None,
    grass: Annotated[Grass | None, Form(description="GREEN: greener grass (restage.grass)")] = None,
    fire_in_fireplaces: Annotated[Fire | None, Form(description="ALIGHT: fire in fireplaces")] = None,
    tvs: Annotated[Tvs | None, Form(description="BLACK_OUT: blank TV screens")] = None,
    photographer: Annotated[
        Photographer | None, Form(description="REMOVE: the photographer, tripod and reflections")
    ] = None,
    vertical_correction: Annotated[bool | None, Form(description="Straighten verticals (Autoenhance: on)")] = None,
    privacy: Annotated[bool | None, Form(description="Blur faces and number plates")] = None,
) -> dict[str, Any]:
    """The settings are form fields beside the photos; each is checked here (a 422 naming it) before
    an order is created or a byte is uploaded. Unset ones take Autoenhance's defaults."""
    chosen = EnhancementSettings(
        enhance_type, sky, grass, fire_in_fireplaces, tvs, photographer, vertical_correction, privacy
    )
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
        too_large = pixel_refusal(data, settings.upload_pixel_limit, label)
        if too_large is not None:
            raise InvalidUpload(too_large)
        async with _decode_slot():
            content_type = await asyncio.to_thread(sniff, data)
        if content_type is None:
            raise InvalidUpload(f"'{label}' is not a complete, readable JPEG, PNG, WebP or TIFF image")
        photos.append((Path(label).name or "photo", data, content_type))
    return await _create(services, (name or "Uploaded order")[:200], photos, chosen)
