"""Choosing photos: `images=` (image ids or exact names) narrows an order to the photos a delivery wants.

Why here, in the core: every door (the ZIP route, jobs, resumes, the CLI) plans an archive from an
order and options, so a selection applied to the order before planning makes the plan, the counts,
the credit estimate, the report and the manifest follow it without each knowing. A chosen photo
keeps its place in the whole order (`ImageInfo.position`), so `03 - kitchen.jpg` is 03 whichever
photos are chosen with it, and its number is padded to the whole order's width.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from app.core.models import BatchOptions, ImageInfo, OrderInfo
from app.errors import InvalidOption

MAX_CHOSEN = 2000
"""Items an `images=` list may name (an order is capped far below; this bounds the parsing work)."""


def parse_images(raw: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A comma list (or list) of image ids or names -> a tuple without blanks or repeats (order kept)."""
    if not raw:
        return ()
    parts = raw.split(",") if isinstance(raw, str) else [p for item in raw for p in item.split(",")]
    wanted = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if len(wanted) > MAX_CHOSEN:
        raise InvalidOption(f"images= names {len(wanted)} photos; at most {MAX_CHOSEN}")
    return wanted


def _numbered(order: OrderInfo) -> list[ImageInfo]:
    """The order's images with their place in the whole order (kept if already set)."""
    return [
        image if image.position is not None else dataclasses.replace(image, position=index)
        for index, image in enumerate(order.images, start=1)
    ]


def choose(order: OrderInfo, options: BatchOptions) -> BatchOptions:
    """The options with `images` resolved to image ids in the order's own order (one canonical cache
    key for any spelling of the same choice); 422 naming what matches no photo, before any download."""
    if not options.images:
        return options
    by_id = {image.image_id: image for image in order.images}
    chosen: set[str] = set()
    unknown: list[str] = []
    for item in options.images:
        if item in by_id:
            chosen.add(item)
            continue
        named = {image.image_id for image in order.images if image.name == item}
        if not named:
            unknown.append(item)
        chosen |= named
    if unknown:
        shown = ", ".join(repr(u[:80]) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InvalidOption(f"images= names no photo of order {order.order_id}: {shown} (give image ids or exact names)")
    ids = tuple(image.image_id for image in order.images if image.image_id in chosen)
    return dataclasses.replace(options, images=ids)


def selected(order: OrderInfo, options: BatchOptions) -> OrderInfo:
    """The order narrowed to the chosen photos (all of them without a choice), each keeping its place."""
    if not options.images:
        return order
    wanted = set(choose(order, options).images)
    images = [image for image in _numbered(order) if image.image_id in wanted]
    listed = order.listed if order.listed is not None else len(order.images)
    return dataclasses.replace(order, images=images, unidentified=0, listed=listed)


def pick(order: OrderInfo, only: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
    """The CLI's `--only`/`--exclude`: each item an image id, an exact name, or a shell pattern
    (`*.dng`, `0[1-5]*`, matched against the name); the chosen ids in the order's order. An item
    matching no photo is refused (a typo must not deliver the wrong set), as is choosing nothing."""

    def matches(item: str) -> set[str]:
        return {
            image.image_id
            for image in order.images
            if item in (image.image_id, image.name)
            or (image.name is not None and fnmatch.fnmatchcase(image.name, item))
        }

    chosen = {image.image_id for image in order.images} if not only else set()
    for flag, items in (("--only", only), ("--exclude", exclude)):
        for item in items:
            found = matches(item)
            if not found:
                raise InvalidOption(f"{flag} {item[:80]!r} matches no photo of the order (give ids, names or patterns)")
            chosen = chosen | found if flag == "--only" else chosen - found
    if not chosen:
        raise InvalidOption("--only/--exclude leave no photo to download")
    return tuple(image.image_id for image in order.images if image.image_id in chosen)
