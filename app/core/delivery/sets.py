"""Delivery sets: the renditions a real-estate delivery needs, each in its own folder of the ZIP.

A listing service (an MLS board) takes JPEGs of about 2048 px on the long edge under a few MB; a
website wants something smaller; print wants full resolution; some agents want the originals.
Autoenhance's download endpoint already resizes and re-encodes (`max_width`, `scale`, `format`,
`quality`) and `/v3/images/{id}/original` returns the upload, so a set is only a named query:

- `full`:     the request's own format, quality, preview, max_width and scale (today's archive)
- `mls`:      JPEG, max_width=2048, quality 80 (a 2048 px photo is then well under 4 MB), full size
- `web`:      JPEG, max_width=1024, quality 80, from the free preview (previews are at most 1024 wide)
- `print`:    JPEG at full resolution, quality 90 and 300 dpi, for print shops (full size: spends credits)
- `original`: the uploaded photo, untouched (free)

Credits: Autoenhance charges for full-resolution enhanced downloads (`preview=false`) unless dev mode.
Its documentation says an image is charged the first time it is downloaded at full size, so a batch
costs at most one credit per photo however many full-size sets it asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.core.models import DEFAULT_SETS, BatchOptions, ImageFormat, ImageInfo, OrderInfo, SetDefinition
from app.errors import InvalidOption

SET_ORDER: tuple[str, ...] = ("full", "mls", "web", "print", "original")
SET_HELP: dict[str, str] = {
    "full": "the chosen format, quality and size; a free preview at most 1024 px wide unless previews are off",
    "mls": "JPEG, at most 2048 px wide, full resolution, for listing services",
    "web": "JPEG, at most 1024 px wide, free, for websites",
    "print": "JPEG, full resolution, quality 90, 300 dpi, for print shops",
    "original": "the uploaded photos, untouched",
}
PRINT_QUALITY = 90
PRINT_DPI = 300
MIN_DPI = 72
"""Autoenhance refuses less; the service refuses it first."""
MAX_DPI = 2400
MLS_WIDTH = 2048
WEB_WIDTH = 1024
SET_QUALITY = 80
ORIGINAL_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".dng"}


def parse_sets(
    raw: str | list[str] | tuple[str, ...] | None,
    custom: Mapping[str, SetDefinition] | None = None,
    *,
    lenient: bool = False,
) -> tuple[str, ...]:
    """A comma list (or list) of set names -> canonical tuple (built-in sets first, then the operator's
    in file order); unknown names are a 422 before any call. `lenient` keeps unknown names, last (the
    CLI's client mode: the service knows its own sets and says if one is wrong)."""
    if raw is None:
        return DEFAULT_SETS
    parts = raw.split(",") if isinstance(raw, str) else [p for item in raw for p in item.split(",")]
    wanted = {p.strip().lower() for p in parts if p.strip()}
    known = (*SET_ORDER, *(custom or {}))
    unknown = sorted(wanted - set(known))
    if unknown and not lenient:
        raise InvalidOption(
            f"Unknown delivery set {', '.join(repr(u[:40]) for u in unknown)}: choose from {', '.join(known)}"
        )
    if not wanted:
        return DEFAULT_SETS
    return tuple(name for name in known if name in wanted) + (tuple(unknown) if lenient else ())


def definitions(names: tuple[str, ...], custom: Mapping[str, SetDefinition] | None) -> tuple[SetDefinition, ...]:
    """The operator's definitions of the chosen sets (carried in BatchOptions.custom)."""
    return tuple(custom[name] for name in names if custom and name in custom)


@dataclass(frozen=True)
class Rendition:
    """One upstream download: which endpoint and which query. What the upstream client needs to fetch."""

    set: str
    endpoint: str  # "enhanced" or "original"
    format: ImageFormat | None  # None: the original's own bytes and type
    quality: int | None
    preview: bool
    max_width: int | None
    scale: float | None
    dev_mode: bool
    dpi: int | None = None
    watermark: bool = False
    max_height: int | None = None
    """Checked after the download (Autoenhance has no such parameter): see app/core/upstream/byte_caps.py."""
    max_bytes: int | None = None
    """Checked after the download; a larger file is asked for again at a lower quality (app/core/upstream/byte_caps.py)."""

    def path(self, image_id: str) -> str:
        return f"images/{image_id}/{self.endpoint}"

    def upstream_query(self) -> dict[str, str]:
        if self.format is None:
            return {}  # no rendering option: Autoenhance returns the upload as it is
        query = {"format": self.format.value}
        if self.endpoint == "enhanced":
            query["preview"] = "true" if self.preview else "false"
        if self.quality is not None:
            query["quality"] = str(self.quality)
        if self.max_width is not None:
            query["max_width"] = str(self.max_width)
        if self.scale is not None:
            query["scale"] = f"{self.scale:g}"
        if self.dpi is not None:
            query["dpi"] = str(self.dpi)
        if self.watermark:
            query["watermark"] = "true"
        return query

    @property
    def full_resolution(self) -> bool:
        """Whether Autoenhance charges a credit for this download (dev mode never is)."""
        return self.endpoint == "enhanced" and not self.preview and not self.dev_mode

    def extension(self, image: ImageInfo) -> str:
        if self.format is not None:
            return self.format.extension
        suffix = "." + (image.name or "").rsplit(".", 1)[-1].lower() if "." in (image.name or "") else ""
        return ".jpg" if suffix in ("", ".jpeg") or suffix not in ORIGINAL_SUFFIXES else suffix


def renditions(options: BatchOptions) -> list[Rendition]:
    """One Rendition per chosen set, in the canonical order."""
    dev = options.dev_mode
    table = {
        "full": Rendition(
            "full", "enhanced", options.format, options.quality, options.preview, options.max_width, options.scale, dev,
            options.dpi,
        ),
        "print": Rendition("print", "enhanced", ImageFormat.jpeg, PRINT_QUALITY, False, None, None, dev, PRINT_DPI),
        "mls": Rendition("mls", "enhanced", ImageFormat.jpeg, SET_QUALITY, False, MLS_WIDTH, None, dev),
        "web": Rendition("web", "enhanced", ImageFormat.jpeg, SET_QUALITY, True, WEB_WIDTH, None, dev),
        "original": Rendition("original", "original", None, None, False, None, None, dev),
    }
    for defined in options.custom:
        table[defined.name] = Rendition(
            defined.name, "enhanced", defined.format, defined.quality, defined.preview, defined.max_width, None, dev,
            defined.dpi, defined.watermark, defined.max_height, defined.max_bytes,
        )
    return [table[name] for name in options.sets if name in table]  # (a set only a remote service knows: none here)


def uses_folders(options: BatchOptions) -> bool:
    """Today's flat archive for the default; one folder per set as soon as another set is chosen."""
    return options.sets != DEFAULT_SETS


@dataclass(frozen=True)
class CreditCost:
    photos: int
    full_size_sets: tuple[str, ...]

    @property
    def downloads(self) -> int:
        """Full-resolution downloads the batch makes (photos x full-size sets)."""
        return self.photos * len(self.full_size_sets)

    @property
    def credits(self) -> int:
        """At most one credit per photo: Autoenhance charges the first full-size download only."""
        return self.photos if self.full_size_sets else 0

    def sentence(self) -> str:
        if not self.full_size_sets:
            return "Free: no set downloads full-size enhanced photos (or dev mode is on)."
        sets = ", ".join(self.full_size_sets)
        return (
            f"Spends up to {self.credits} Autoenhance credit{'s' * (self.credits != 1)}: "
            f"{self.photos} photo{'s' * (self.photos != 1)} x {len(self.full_size_sets)} full-size "
            f"set{'s' * (len(self.full_size_sets) != 1)} ({sets}) = {self.downloads} full-size downloads; "
            "Autoenhance charges each photo once, the first time it is downloaded at full size."
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "photos": self.photos,
            "full_size_sets": list(self.full_size_sets),
            "full_size_downloads": self.downloads,
            "credits": self.credits,
            "text": self.sentence(),
        }


def credit_cost(photos: int, options: BatchOptions) -> CreditCost:
    return CreditCost(photos, tuple(r.set for r in renditions(options) if r.full_resolution))


def catalogue(custom: Mapping[str, SetDefinition] | None = None) -> list[dict[str, object]]:
    """Every set this service offers, as GET /api/sets, the page and the CLI list them: what each asks
    Autoenhance for (the `full` set as its defaults: callers shape it with format, quality, size, dpi),
    the built-in ones first, then the operator's (DELIVERY_SETS)."""
    custom = custom or {}
    options = BatchOptions(sets=(*SET_ORDER, *custom), custom=tuple(custom.values()))
    listed: list[dict[str, object]] = []
    for rendition in renditions(options):
        listed.append(
            {
                "name": rendition.set,
                "description": SET_HELP.get(rendition.set) or custom[rendition.set].description,
                "built_in": rendition.set in SET_HELP,
                "max_height": rendition.max_height,
                "max_bytes": rendition.max_bytes,
                "watermark": rendition.watermark,
                "source": rendition.endpoint,
                "format": rendition.format.value if rendition.format is not None else None,
                "quality": rendition.quality,
                "max_width": rendition.max_width,
                "dpi": rendition.dpi,
                "full_resolution": rendition.endpoint == "enhanced" and not rendition.preview,
                "spends_credits": rendition.full_resolution,
                "shaped_by_options": rendition.set == "full",
            }
        )
    return listed


def files_total(order: OrderInfo, options: BatchOptions) -> int:
    """The files an archive of `order` holds (photos x sets, plus one failure per unidentified image):
    the one unit every count, header, status and webhook uses."""
    return len(order.images) * len(renditions(options)) + order.unidentified


def files_and_photos(photos: int, sets: tuple[str, ...], chosen_of: int | None = None) -> str:
    """What a download holds, counted in files (the unit of every count): '3 photos, set: full' or
    '80 files: 40 photos x 2 sets (full, mls)'; photos chosen with --only/--exclude say of how many,
    next to the photos they count: '2 photos (chosen of 5), set: full'."""
    plural = "s" * (photos != 1)
    of = f" (chosen of {chosen_of})" if chosen_of is not None else ""
    if len(sets) == 1:
        return f"{photos} photo{plural}{of}, set: {sets[0]}"
    return f"{photos * len(sets)} files: {photos} photo{plural}{of} x {len(sets)} sets ({', '.join(sets)})"
