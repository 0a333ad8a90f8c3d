"""An order's plan: which files its archive holds, under which names, from which rendition, in which order.

A plain function of the order and the options, so every place that needs the plan (a live batch, a
resume checking a recorded layout against today's order, anything that counts or lists files) gets
the same answer without opening a batch. The same order version and options always plan alike:
a resume relies on it to find each recorded member's photo and rendition by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.delivery.selection import selected
from app.core.delivery.sets import Rendition, renditions, uses_folders
from app.core.delivery.templates import Template, Values, parse_template, render
from app.core.models import BatchOptions, ImageInfo, NameStyle, OrderInfo
from app.core.naming import NameAllocator, safe_stem


@dataclass(frozen=True)
class PlannedFile:
    """One file the archive means to hold: a photo in one rendition, under its member name."""

    image: ImageInfo
    rendition: Rendition
    name: str
    """The member name, unique in the archive (`<set>/` in front when sets use folders)."""


def plan(order: OrderInfo, options: BatchOptions) -> list[PlannedFile]:
    """Every file of the archive, photo by photo in the order's own order, each photo's sets in turn.

    Only the chosen photos (`images=`) are planned. Names are unique per folder; with
    `names=sequence` each starts with the photo's zero-padded place in the order (`03 - kitchen.jpg`),
    the same number in every set. Entries without an image id are not files: they are not planned.
    """
    order = selected(order, options)
    chosen = renditions(options)
    folders = uses_folders(options)
    allocators = {r.set: NameAllocator() for r in chosen}
    numbers = order.numbers or {}
    width = max(2, len(str(max([order.listed or len(order.images), *numbers.values()]))))
    template = parse_template(options.template) if options.template is not None else None
    planned = []
    for index, image in enumerate(order.images, start=1):
        # kept numbers first (a photo added later takes the next), then the place in the whole order
        # (kept when photos are chosen), then the place here
        position = numbers.get(image.image_id, image.position or index)
        prefix = f"{position:0{width}d} - " if options.names is NameStyle.sequence else ""
        for rendition in chosen:
            extension = rendition.extension(image)
            allocator = allocators[rendition.set]
            if template is None:
                name = allocator.allocate(image.name, image.image_id, extension, prefix)
            else:
                stem = _templated(template, order, image, position, width, rendition.set, extension)
                name = allocator.allocate(stem, image.image_id, extension)
            planned.append(PlannedFile(image, rendition, f"{rendition.set}/{name}" if folders else name))
    return planned


def _templated(
    template: Template, order: OrderInfo, image: ImageInfo, position: int, width: int, set_name: str, extension: str
) -> str:
    """A template's stem for one file: path separators made plain characters (a name never makes a
    folder), the extension taken off when the template wrote it (allocate adds it back)."""
    values = Values(
        n=position,
        width=width,
        name=safe_stem(image.name, image.image_id),
        ext=extension.lstrip("."),
        order=order.name or order.order_id,
        set=set_name,
    )
    stem = render(template, values).replace("/", "_").replace("\\", "_")
    if stem.casefold().endswith(extension.casefold()):
        stem = stem[: -len(extension)]
    return stem
