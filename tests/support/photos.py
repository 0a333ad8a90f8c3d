"""Real JPEG photos of a chosen size and colour, for orders whose images a test resizes, converts or
previews (a `SeedImage` given only a size holds synthetic bytes, not a picture)."""

from __future__ import annotations

import io

from PIL import Image


def photo(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()
