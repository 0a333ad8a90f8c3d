"""Pillow work: a visible "AI" enhancement, dev-mode watermark, resizing and real encoding.

Everything here is synchronous and CPU-bound; callers run it in a worker thread so the event loop
keeps serving other downloads meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

# Registers JPEG XL with Pillow (Pillow itself reads and writes AVIF). The server extra brings it; the
# command's base install runs the simulator for `autoenhance-batch demo` without it (no format=jxl there).
with contextlib.suppress(ImportError):
    import pillow_jxl  # noqa: F401

PREVIEW_MAX_WIDTH = 1024
"""Previews (the /enhanced default) are at most this wide."""

CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
}
PIL_FORMATS: dict[str, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "jxl": "JXL"}
WATERMARK_TEXT = "AUTOENHANCE DEV"

# Per enhance_type: (red gain, blue gain, saturation); "warm" is the house look.
_LOOKS: dict[str, tuple[float, float, float]] = {
    "warm": (1.05, 0.93, 1.18),
    "neutral": (1.02, 0.97, 1.12),
    "modern": (0.99, 1.01, 1.06),
    "property": (1.04, 0.95, 1.15),
    "property_usa": (1.05, 0.94, 1.2),
}


class ImageDecodeError(ValueError):
    """The bytes are not an image Pillow can read."""


@dataclass(frozen=True)
class RenderSpec:
    """How to turn a source image into the bytes of one download."""

    enhanced: bool
    format: str = "jpeg"
    quality: int | None = None
    preview: bool = False
    max_width: int | None = None
    scale: float | None = None
    watermark: bool = False
    enhance_type: str | None = None
    dpi: int | None = None
    """Written into the file's density (JPEG JFIF, PNG pHYs, WebP/AVIF where Pillow can) when asked."""


def sniff_format(data: bytes) -> str | None:
    """'jpeg', 'png', 'webp', ... when Pillow recognises the header, else None. Cheap: no decode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return (img.format or "").lower() or None
    except Exception:  # any parse failure means "not an image"
        return None


def pixels(data: bytes) -> int | None:
    """Width x height from the header alone (Pillow reads pixels only on load); None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return int(img.width * img.height)
    except Image.DecompressionBombError:
        return 2**62  # over Pillow's own ceiling: more than any bound
    except Exception:  # not an image: sniff_format says so
        return None


def decode(data: bytes) -> Image.Image:
    """Decode to an upright RGB image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            return upright.convert("RGB")
    except Exception as exc:
        raise ImageDecodeError(str(exc)) from exc


def _percentile(hist: list[int], fraction: float) -> int:
    target, seen = sum(hist) * fraction, 0
    for value, count in enumerate(hist):
        seen += count
        if seen >= target:
            return value
    return 255


def enhance(img: Image.Image, enhance_type: str | None = None) -> Image.Image:
    """Levels, an exposure lift for dull photos, warmth, saturation and a little sharpening.

    The stretch is bounded (black point at most 16, white point at least 200) so flat or
    already-good images get a gentle lift instead of crushed shadows.
    """
    red_gain, blue_gain, saturation = _LOOKS.get((enhance_type or "warm").lower(), _LOOKS["warm"])
    hist = img.convert("L").histogram()
    low = min(_percentile(hist, 0.005), 16)
    high = max(_percentile(hist, 0.995), 200)
    scale = 255.0 / max(high - low, 1)
    levels = [min(1.0, max(0.0, (i - low) * scale / 255.0)) for i in range(256)]
    mean = max(sum(h * levels[i] for i, h in enumerate(hist)) / max(sum(hist), 1), 0.02)
    gamma = min(1.0, max(0.6, math.log(0.5) / math.log(mean))) if mean < 0.5 else 1.0
    base = [255.0 * v**gamma for v in levels]
    lut = (
        [min(255, round(v * red_gain)) for v in base]
        + [min(255, round(v)) for v in base]
        + [min(255, round(v * blue_gain)) for v in base]
    )
    out = img.point(lut)
    out = ImageEnhance.Color(out).enhance(saturation)
    out = ImageEnhance.Contrast(out).enhance(1.06)
    return out.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=3))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType
        return ImageFont.load_default()


def watermark(img: Image.Image, text: str = WATERMARK_TEXT) -> Image.Image:
    """A translucent dark band with white text across the middle: obvious, like the real dev mode."""
    base = img.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    width, height = base.size
    band = max(12, height // 6)
    top = (height - band) // 2
    draw.rectangle((0, top, width, top + band), fill=(20, 20, 20, 110))
    font = _font(max(10, band // 2))
    left, upper, right, lower = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) // 2 - left
    y = top + (band - (lower - upper)) // 2 - upper
    draw.text((x, y), text, font=font, fill=(255, 255, 255, 190))
    return Image.alpha_composite(base, overlay).convert("RGB")


def target_size(width: int, height: int, spec: RenderSpec) -> tuple[int, int]:
    """Apply scale, max_width and the preview cap, never upscaling."""
    factor = 1.0
    if spec.scale is not None:
        factor = min(factor, spec.scale)
    caps = [c for c in (spec.max_width, PREVIEW_MAX_WIDTH if spec.preview else None) if c]
    for cap in caps:
        factor = min(factor, cap / width)
    new_w = max(1, round(width * factor))
    new_h = max(1, round(height * factor))
    return (new_w, new_h) if factor < 1.0 else (width, height)


def encode(img: Image.Image, fmt: str, quality: int | None, dpi: int | None = None) -> bytes:
    """Encode with Pillow; quality applies to jpeg, webp, avif and jxl (speed settings favour tests)."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=3, **({"dpi": (dpi, dpi)} if dpi else {}))
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality or 80, method=2)
    elif fmt == "avif":
        img.save(buf, "AVIF", quality=quality or 70, speed=8)
    elif fmt == "jxl":
        img.save(buf, "JXL", quality=quality or 80, effort=3)
    else:
        img.save(buf, "JPEG", quality=quality or 90, **({"dpi": (dpi, dpi)} if dpi else {}))
    return buf.getvalue()


def prepare(source: Image.Image, spec: RenderSpec) -> Image.Image:
    """The pixels of a download before encoding (source must already be enhanced if wanted)."""
    img = source
    size = target_size(*img.size, spec)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    if spec.watermark:
        img = watermark(img)
    return img


def render(base: Image.Image, spec: RenderSpec) -> tuple[bytes, str]:
    """Bytes and Content-Type of one download from `base` (already enhanced when spec.enhanced)."""
    fmt = spec.format if spec.format in CONTENT_TYPES else "jpeg"
    quality = spec.quality if spec.quality is not None else (75 if spec.preview else None)
    return encode(prepare(base, spec), fmt, quality, spec.dpi), CONTENT_TYPES[fmt]
