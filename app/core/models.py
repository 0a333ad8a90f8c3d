"""What we read from Autoenhance and what callers choose, as small typed records.

Upstream JSON is parsed tolerantly: the v3 API has renamed fields across versions (`image_id`/`id`,
`image_name`/`name`) and older accounts still see legacy booleans, so we accept every known variant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from app.core.upstream.text import valid_text
from app.errors import InvalidOrderId, UpstreamBadResponse

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def is_order_id(text: str) -> bool:
    """Whether `text` is an order id (a UUID), not an order's name."""
    return bool(_UUID.match(text.strip()))


def validate_order_id(order_id: str) -> str:
    """Reject anything but a UUID before it reaches an upstream URL."""
    if not _UUID.match(order_id):
        shown = (
            order_id
            if len(order_id) <= 80 and order_id.isprintable()
            else order_id[:80].encode("unicode_escape").decode()
        )
        raise InvalidOrderId(
            f"Invalid order id: expected a UUID such as 123e4567-e89b-12d3-a456-426614174000, got '{shown}'"
        )
    return order_id.lower()


class ImageFormat(StrEnum):
    """The download formats Autoenhance documents (`avif|png|jpeg|jxl|webp`)."""

    jpeg = "jpeg"
    png = "png"
    webp = "webp"
    avif = "avif"
    jxl = "jxl"

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.value]

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.value]


_EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "avif": ".avif", "jxl": ".jxl"}
_CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
}


class NameStyle(StrEnum):
    """`original`: the upload's own name; `sequence`: prefixed with its zero-padded place in the order."""

    original = "original"
    sequence = "sequence"


DEFAULT_SETS: tuple[str, ...] = ("full",)


@dataclass(frozen=True)
class SetDefinition:
    """A delivery set an operator defines in DELIVERY_SETS (app/core/delivery/set_file.py): what to ask
    Autoenhance for, and the limits a listing board puts on each file."""

    name: str
    description: str = ""
    format: ImageFormat = ImageFormat.jpeg
    quality: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    """Autoenhance has no height limit: a file taller than this is asked for again at a narrower max_width."""
    dpi: int | None = None
    watermark: bool = False
    """Autoenhance's own `watermark` on the download (a branded set)."""
    max_bytes: int | None = None
    """A byte cap: a larger file is asked for again at a lower quality, a few tries at most."""
    preview: bool = False
    """True: from the free preview (at most 1024 px); False: full resolution (spends credits)."""

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["format"] = self.format.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetDefinition:
        return cls(**(data | {"format": ImageFormat(data.get("format", "jpeg"))}))


@dataclass(frozen=True)
class BatchOptions:
    """The caller's choices for one archive; every field is part of the cache key.

    `format`, `quality`, `preview`, `max_width` and `scale` shape the `full` set; the other delivery
    sets (app/core/delivery/sets.py) fix their own. `sets` is kept in a canonical order, without repeats.
    """

    format: ImageFormat = ImageFormat.jpeg
    quality: int | None = None
    preview: bool = True
    dev_mode: bool = False
    sets: tuple[str, ...] = DEFAULT_SETS
    names: NameStyle = NameStyle.original
    max_width: int | None = None
    scale: float | None = None
    sort: str | None = None
    """The photo order asked for (one of IMAGE_SORTS); None: the order's own `default_image_sort_order`."""
    images: tuple[str, ...] = ()
    """The chosen photos (image ids once resolved by app/core/delivery/selection.py); empty: every photo."""
    template: str | None = None
    """A name template (app/core/delivery/templates.py), checked when the options are made; None: `names` decides."""
    dpi: int | None = None
    """The full set's density in dots per inch (Autoenhance's `dpi`, at least 72); None: Autoenhance's."""
    custom: tuple[SetDefinition, ...] = ()
    """The definitions of the operator's sets named in `sets`, carried with the options so a job run
    elsewhere, the cache key and the manifest all see what was asked (a changed definition misses the cache)."""

    def key(self) -> str:
        q = "auto" if self.quality is None else str(self.quality)
        key = f"{self.format.value}-q{q}-preview{int(self.preview)}-dev{int(self.dev_mode)}"
        if self.sets != DEFAULT_SETS or self.names is not NameStyle.original:
            key += f"-sets{'+'.join(self.sets)}-names{self.names.value}"
        if self.max_width is not None or self.scale is not None:
            key += f"-w{self.max_width or 0}-s{self.scale if self.scale is not None else 0:g}"
        if self.sort is not None:
            key += f"-sort{self.sort}"
        if self.images:
            key += "-images" + hashlib.sha256("\n".join(self.images).encode()).hexdigest()[:16]
        if self.template is not None:
            key += "-template" + hashlib.sha256(self.template.encode()).hexdigest()[:16]
        if self.dpi is not None:
            key += f"-dpi{self.dpi}"
        if self.custom:
            defined = json.dumps([d.as_dict() for d in self.custom], sort_keys=True)
            key += "-custom" + hashlib.sha256(defined.encode()).hexdigest()[:16]
        return key

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format.value,
            "quality": self.quality,
            "preview": self.preview,
            "dev_mode": self.dev_mode,
            "sets": list(self.sets),
            "names": self.names.value,
            "max_width": self.max_width,
            "scale": self.scale,
            "sort": self.sort,
            "images": list(self.images),
            "template": self.template,
            "dpi": self.dpi,
            "custom_sets": [d.as_dict() for d in self.custom],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchOptions:
        return cls(
            format=ImageFormat(data.get("format", "jpeg")),
            quality=data.get("quality"),
            preview=bool(data.get("preview", True)),
            dev_mode=bool(data.get("dev_mode", False)),
            sets=tuple(data.get("sets") or DEFAULT_SETS),
            names=NameStyle(data.get("names") or "original"),
            max_width=data.get("max_width"),
            scale=data.get("scale"),
            sort=_known_sort(data.get("sort")),
            images=tuple(data.get("images") or ()),
            template=data.get("template"),
            dpi=data.get("dpi"),
            custom=tuple(SetDefinition.from_dict(d) for d in data.get("custom_sets") or ()),
        )


# Image statuses that mean "do not bother downloading yet", with the reason we report.
_NOT_DOWNLOADABLE = {
    "waiting": "not uploaded or not started yet (status 'waiting')",
    "processing": "still being enhanced (status 'processing')",
    "error": "enhancement failed upstream (status 'error')",
    "expired": "expired on Autoenhance (status 'expired')",
}


@dataclass(frozen=True)
class ImageInfo:
    """One image of an order as the order listing describes it."""

    image_id: str
    name: str | None
    status: str | None
    status_reason: str | None
    date_added: float | None = None
    """When it was added (Autoenhance sends epoch milliseconds); sorts `date_added`."""
    position: int | None = None
    """Its place (from 1) in the whole order, kept when photos are chosen (app/core/delivery/selection.py)."""

    def skip_reason(self) -> str | None:
        """Why the order says this image cannot be downloaded now, or None to try it."""
        if self.status is None:
            return None
        reason = _NOT_DOWNLOADABLE.get(self.status.lower())
        if reason and self.status_reason:
            reason = f"{reason}: {self.status_reason}"
        return reason


@dataclass(frozen=True)
class OrderInfo:
    order_id: str
    name: str | None
    last_updated_at: str | None
    images: list[ImageInfo]
    unidentified: int = 0
    """Entries of the order's image list that carry no id: reported, never fetched."""
    default_sort: str | None = None
    """The order's `default_image_sort_order` (how the photographer arranged it), when Autoenhance says."""
    sort: str | None = None
    """The sort `images` follows (None: as Autoenhance listed them, its default)."""
    api_version: str | None = None
    """The Autoenhance API version asked for when the order was read (None: the account's own)."""
    numbers: dict[str, int] | None = None
    """`names=sequence` numbers by image id, when kept from earlier archives (else: places in `images`)."""

    def arrangement(self) -> str:
        """A digest of what numbered names depend on: the sort, the images' order and kept numbers. Part of
        the archive cache key, so a rearranged order misses even if Autoenhance kept its last_updated_at."""
        numbers = self.numbers or {}
        text = "|".join([self.sort or "-", *(f"{i.image_id}:{numbers.get(i.image_id, '')}" for i in self.images)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def sorted_by(self, sort: str | None, *, api_version: str | None = None) -> OrderInfo:
        """This order with its images in `sort`. Name and date sorts are applied here as well, so an
        API version that ignores `sort_images_by` still gives them; `custom` is Autoenhance's to know,
        so its listing order is kept. Ties keep Autoenhance's order (a stable sort)."""
        images = list(self.images)
        if sort in ("name", "-name"):
            images.sort(key=lambda i: ((i.name or "").casefold(), i.name or ""), reverse=sort == "-name")
        elif sort in ("date_added", "-date_added"):
            images.sort(key=lambda i: i.date_added if i.date_added is not None else 0.0, reverse=sort == "-date_added")
        return replace(self, images=images, sort=sort, api_version=api_version)
    listed: int | None = None
    """Images in the whole order when `images` holds only the chosen ones (numbers are padded to it)."""

    @property
    def is_processing(self) -> bool:
        return any((i.status or "").lower() in ("waiting", "processing") for i in self.images)


def _text(value: Any) -> str | None:
    """A field as text, valid Unicode (a lone surrogate could reach no file name or header), or None."""
    if value is None:
        return None
    text = valid_text(str(value)).strip()
    return text or None


def parse_image(raw: Any) -> ImageInfo | None:
    """One image entry; None when it has no usable id (reported by the caller, never fetched)."""
    if not isinstance(raw, dict):
        return None
    image_id = _text(raw.get("image_id")) or _text(raw.get("id"))
    if image_id is None:
        return None
    status = _text(raw.get("status"))
    if status is None and raw.get("error") is True:
        status = "error"
    added = raw.get("date_added")
    return ImageInfo(
        image_id=image_id,
        name=_text(raw.get("image_name")) or _text(raw.get("name")),
        status=status,
        status_reason=_text(raw.get("status_reason")) or _text(raw.get("error_reason")),
        date_added=float(added) if isinstance(added, int | float) and not isinstance(added, bool) else None,
    )


def parse_order(order_id: str, raw: Any) -> OrderInfo:
    """The order JSON of GET /v3/orders/{id}, tolerant of missing and renamed fields."""
    if not isinstance(raw, dict):
        raise UpstreamBadResponse("Autoenhance returned an order this service cannot read (not a JSON object)")
    images_raw = raw.get("images")
    if images_raw is None:
        images_raw = []
    if not isinstance(images_raw, list):
        raise UpstreamBadResponse("Autoenhance returned an order this service cannot read ('images' is not a list)")
    parsed = [parse_image(item) for item in images_raw]
    images = [img for img in parsed if img is not None]
    return OrderInfo(
        order_id=order_id,  # the validated id we asked for, not whatever the body echoes
        name=_text(raw.get("name")) or _text(raw.get("order_name")),
        last_updated_at=_text(raw.get("last_updated_at"))
        or _text(raw.get("updated_at"))
        or _text(raw.get("created_at")),
        images=images,
        unidentified=len(parsed) - len(images),
        default_sort=_known_sort(raw.get("default_image_sort_order")),
    )


IMAGE_SORTS = ("name", "-name", "date_added", "-date_added", "custom")
"""How an order's images can be ordered (`sort_images_by`, `default_image_sort_order`)."""


class ImageSort(StrEnum):
    """IMAGE_SORTS as an enum, for query validation and the command's choices."""

    by_name = "name"
    by_name_reversed = "-name"
    oldest_first = "date_added"
    newest_first = "-date_added"
    custom = "custom"


def assign_numbers(images: list[ImageInfo], kept: dict[str, int]) -> dict[str, int]:
    """Sequence numbers for `images` (in the order's order), keeping the numbers earlier archives gave.

    An image not numbered before gets the next free number (after the highest ever given), so a
    photo added later (a Day-to-Dusk result) never renumbers the others. When the kept numbers no
    longer rise along `images`, the photographer rearranged the order: number afresh from 1.
    """
    known = [kept[i.image_id] for i in images if i.image_id in kept]
    if not known or any(a >= b for a, b in itertools.pairwise(known)):
        return {image.image_id: n for n, image in enumerate(images, start=1)}
    numbers = dict(kept)
    after = max(kept.values())
    for image in images:
        if image.image_id not in numbers:
            after += 1
            numbers[image.image_id] = after
    return numbers


def _known_sort(value: Any) -> str | None:
    """A sort this service knows; an unknown value (a future one) is read as "not said"."""
    return value if isinstance(value, str) and value in IMAGE_SORTS else None
