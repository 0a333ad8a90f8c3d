"""Client mode's rerun after a partial ZIP (exit 3): only the missing photos are asked of the service,
then the ZIP is rebuilt from the files it held and the new ones.

The service's own `images=` does the choosing: a chosen photo keeps its place in the whole order,
so numbered names and templates come out as in the first run. The report and the manifest of the
whole are written by app/core/report.py, as the service writes them. Direct mode tops up inside the
engine instead (app/cli/topup.py `ArchiveKeep`); the service has no door that takes files back.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.cli.partfile import open_own
from app.core.models import BatchOptions, ImageInfo, OrderInfo
from app.core.naming import MANIFEST_NAME
from app.core.report import Summary, closing_files
from app.errors import ImageFailure

RETRY_HINT = (
    "Run the same command again (the same -o): the files this ZIP holds are kept and only the missing ones are fetched."
)
COPY_CHUNK = 1024 * 1024
ZIP64_EXTRA = 0x0001
"""The Zip64 extra field: zipfile writes its own where a member needs one, so a copied one is dropped."""

Key = tuple[str | None, str]
"""A file of the archive: (its set, its image id)."""


def fresh_path(out: Path) -> Path:
    """Where the missing photos' own ZIP is saved (and resumed from, as any download) before the merge."""
    return out.with_name(out.name + ".missing.zip")


@dataclass
class _Whole(Summary):
    """The rebuilt archive: the report's summary, and how many of its files the earlier ZIP gave."""

    reused: int = 0


def _key(entry: dict[str, Any]) -> Key:
    return entry.get("set"), str(entry["image_id"])


def _failure(entry: dict[str, Any]) -> ImageFailure:
    return ImageFailure(
        str(entry["image_id"]),
        str(entry.get("name")),
        str(entry.get("reason")),
        str(entry.get("recovery")),
        entry.get("set"),
    )


def _order(manifest: dict[str, Any], photos: list[dict[str, Any]], options: BatchOptions) -> OrderInfo:
    """The order as the report needs it: the chosen photos in the service's order (for sorting)."""
    chosen = set(options.images)
    images = [
        ImageInfo(str(p["image_id"]), p.get("name"), None, None, position=n)
        for n, p in enumerate(photos, start=1)
        if not chosen or p["image_id"] in chosen
    ]
    return OrderInfo(
        str(manifest["order_id"]),
        manifest.get("order_name"),
        None,
        images,
        sort=manifest.get("image_order"),
        api_version=manifest.get("api_version"),
        listed=len(photos) if chosen else None,
    )


def _plain_extra(extra: bytes) -> bytes:
    """`extra` without its Zip64 field (the other fields, such as the UTC time, are kept)."""
    kept, at = b"", 0
    while at + 4 <= len(extra):
        size = int.from_bytes(extra[at + 2 : at + 4], "little")
        if int.from_bytes(extra[at : at + 2], "little") != ZIP64_EXTRA:
            kept += extra[at : at + 4 + size]
        at += 4 + size
    return kept


def _copy(source: zipfile.ZipFile, name: str, target: zipfile.ZipFile) -> None:
    found = source.getinfo(name)
    info = zipfile.ZipInfo(found.filename, found.date_time)
    info.external_attr, info.extra = found.external_attr, _plain_extra(found.extra)
    with source.open(found) as src, target.open(info, "w", force_zip64=found.file_size >= 1 << 31) as dst:
        shutil.copyfileobj(src, dst, COPY_CHUNK)  # read back through zipfile: each CRC-32 is checked


def merge(out: Path, fresh: Path, part: Path, photos: list[dict[str, Any]]) -> _Whole:
    """Write `part` from `out` (the earlier ZIP) and `fresh` (its missing photos), then move it over `out`.

    A file the fresh ZIP holds replaces the earlier one of the same set and image; every other file
    of the earlier ZIP is kept. The failures left are those neither ZIP holds a file for."""
    with zipfile.ZipFile(out) as earlier, zipfile.ZipFile(fresh) as new:
        before = json.loads(earlier.read(MANIFEST_NAME))
        after = json.loads(new.read(MANIFEST_NAME))
        files = {_key(f): (earlier, f) for f in before.get("files") or []}
        fetched = {_key(f): (new, f) for f in after.get("files") or []}
        files |= fetched
        retried = {_key(f): f for f in after.get("failures") or []}
        failures = [_failure(retried.get(_key(f), f)) for f in before.get("failures") or [] if _key(f) not in files]
        options = BatchOptions.from_dict(before["options"])
        whole = _Whole(
            _order(before, photos, options),
            options,
            int(before["photos"]),
            int(before["total"]),
            len(files),
            failures,
            [entry for _, entry in files.values()],
            retry_hint=RETRY_HINT,
            reused=len(files) - len(fetched),
        )
        closing = closing_files(whole)
        in_order = json.loads(dict(closing)[MANIFEST_NAME])["files"]
        try:
            _write(part, files, in_order, closing)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    part.replace(out)
    return whole


def _write(
    part: Path,
    files: dict[Key, tuple[zipfile.ZipFile, dict[str, Any]]],
    in_order: list[dict[str, Any]],
    closing: list[tuple[str, bytes]],
) -> None:
    """The rebuilt ZIP: the files in the manifest's order, then the report (if any) and the manifest."""
    with open_own(part, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as target:
        for entry in in_order:
            source, _ = files[_key(entry)]
            _copy(source, str(entry["name"]), target)
        now = datetime.now(UTC).timetuple()[:6]  # UTC, as the service dates its members
        for name, data in closing:
            target.writestr(zipfile.ZipInfo(name, now), data)
