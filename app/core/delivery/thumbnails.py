"""A small JPEG of one photo, for the page and for share pages: free (Autoenhance's preview, or the
original while the photo is still being enhanced), at most THUMBNAIL_WIDTH wide."""

from __future__ import annotations

from pathlib import Path

from app.core.delivery.sets import Rendition
from app.core.models import ImageFormat
from app.core.spool import Spool
from app.core.upstream.client import AutoenhanceClient, ImageDownloadFailed

THUMBNAIL_WIDTH = 320
THUMBNAIL_MAX_BYTES = 2 * 1024 * 1024


async def thumbnail_bytes(client: AutoenhanceClient, spool_dir: Path, image_id: str) -> bytes | None:
    """The thumbnail's bytes, or None when Autoenhance has neither a preview nor an original yet."""
    jpeg, width = ImageFormat.jpeg, THUMBNAIL_WIDTH
    for rendition in (
        Rendition("thumbnail", "enhanced", jpeg, 70, True, width, None, False),  # the free preview
        Rendition("thumbnail", "original", jpeg, 70, False, width, None, False),  # not enhanced yet
    ):
        spool = Spool(spool_dir, THUMBNAIL_MAX_BYTES, THUMBNAIL_MAX_BYTES)
        try:
            await client.download_enhanced(image_id, rendition, spool)
            return b"".join(spool.chunks())
        except ImageDownloadFailed:
            continue
        finally:
            spool.close()
    return None
