"""A set's limits that Autoenhance cannot be asked for directly: a byte cap and a maximum height.

Why after the download: Autoenhance resizes by width (`max_width`, `scale`) and encodes at a
`quality`, but offers no height limit and no size target. A listing board that caps photos at
1280x960 and 125 KB rejects a portrait photo 1280 px wide, or a detailed one at 140 KB. So the file
is checked once it is spooled and, when over, asked for again: narrower (from its own proportions)
when too tall, at a lower quality (from how far over it is) when too heavy, at most MAX_TRIES more
times, each logged. A photo that still cannot meet the cap fails with the reason, so it is in the
report rather than silently oversized in the board's folder. Asking again costs no extra credit:
Autoenhance charges a photo the first time it is downloaded at full size.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from PIL import ImageFile

from app.core.delivery.sets import Rendition
from app.core.spool import Spool
from app.core.upstream.client import AutoenhanceClient, ImageDownloadFailed

log = logging.getLogger("app.engine")

MAX_TRIES = 3
"""Downloads after the first one, at most, to meet a set's limits."""
MIN_QUALITY = 20
"""Below this a listing photo is visibly blocky: the cap is reported unmet instead."""
FIRST_QUALITY = 85
"""The quality assumed for a set that names none (Autoenhance's own default is not documented)."""
HEADER_SLICE = 64 * 1024
RECOVER_CAP = "Give the set a larger max_bytes or a smaller max_width in DELIVERY_SETS, or send this photo by hand"


def _dimensions(spool: Spool) -> tuple[int, int] | None:
    """Width and height from the file's header, fed 64 KiB at a time (no full decode); None if unreadable.

    The pieces are copied to bytes as they are fed (Pillow's parser joins bytes), a slice at a time:
    a spool's piece may be a whole received block, and the header is in its first kilobytes."""
    parser = ImageFile.Parser()
    for chunk in spool.chunks():
        for at in range(0, len(chunk), HEADER_SLICE):
            parser.feed(bytes(chunk[at : at + HEADER_SLICE]))
            if parser.image is not None:
                width, height = parser.image.size
                return int(width), int(height)
    return None


def _next_quality(current: int, size: int, cap: int) -> int:
    """Lower quality in proportion to how far over the cap the file is, by at least 10 steps."""
    guess = int(current * (cap / size) ** 1.5)
    return max(MIN_QUALITY, min(current - 10, guess))


def _problems(rendition: Rendition, spool: Spool) -> tuple[str | None, tuple[int, int] | None]:
    over_bytes = rendition.max_bytes is not None and spool.size > rendition.max_bytes
    size = _dimensions(spool) if rendition.max_height is not None else None
    too_tall = size is not None and rendition.max_height is not None and size[1] > rendition.max_height
    reasons = []
    if over_bytes:
        reasons.append(f"{spool.size:,} bytes, over the set's cap of {rendition.max_bytes:,}")
    if too_tall and size is not None:
        reasons.append(f"{size[1]} px tall, over the set's {rendition.max_height}")
    return ("; ".join(reasons) or None), size


async def fetch_within_caps(client: AutoenhanceClient, image_id: str, rendition: Rendition, spool: Spool) -> None:
    """Download `rendition` into `spool`, then ask again until it meets the set's byte cap and height.

    Raises ImageDownloadFailed (the photo is reported) when MAX_TRIES more downloads do not get there."""
    await client.download_enhanced(image_id, rendition, spool)
    if rendition.max_bytes is None and rendition.max_height is None:
        return
    asked = rendition
    tries = 0
    for attempt in range(1, MAX_TRIES + 1):
        problem, size = _problems(rendition, spool)
        if problem is None:
            return
        changes: dict[str, int] = {}
        if size is not None and rendition.max_height is not None and size[1] > rendition.max_height:
            changes["max_width"] = max(1, math.floor(size[0] * rendition.max_height / size[1]))
        if rendition.max_bytes is not None and spool.size > rendition.max_bytes:
            current = asked.quality or FIRST_QUALITY
            if current <= MIN_QUALITY and "max_width" not in changes:
                break
            changes["quality"] = _next_quality(current, spool.size, rendition.max_bytes)
        asked = dataclasses.replace(
            asked, max_width=changes.get("max_width", asked.max_width), quality=changes.get("quality", asked.quality)
        )
        log.info(
            "asking again to meet the set's limits",
            extra={"image_id": image_id, "set": rendition.set, "try": attempt, "problem": problem, "asking": changes},
        )
        await client.download_enhanced(image_id, asked, spool)
        tries = attempt
    problem, _ = _problems(rendition, spool)
    if problem is None:
        return
    log.warning("set limits not met", extra={"image_id": image_id, "set": rendition.set, "problem": problem})
    raise ImageDownloadFailed(
        f"cannot meet the {rendition.set} set's limits: {problem} at quality {asked.quality or FIRST_QUALITY} "
        f"after {tries} more tr{'y' if tries == 1 else 'ies'}",
        RECOVER_CAP,
    )
