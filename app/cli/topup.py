"""A rerun after a partial ZIP (exit 3): the files the ZIP holds are reused, only the missing ones fetched.

The ZIP's own `_manifest.json` says which member is which (set, image id); when it names the same
order and the same options, each of its members stands in for a download, read back through
zipfile (which checks the member's CRC-32 as it reads: a damaged member is downloaded again).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cli.saved_parts import FolderKeep
from app.cli.transfer import read_manifest
from app.core.models import BatchOptions
from app.core.spool import Spool

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class EarlierArchive:
    """A finished ZIP of this order and options, and its members by keep key (`set/image id`)."""

    path: Path
    members: dict[str, str]
    total: int
    failed: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """The image ids of its failures, each once, in the report's order."""
        return list(dict.fromkeys(str(f["image_id"]) for f in self.failures if f.get("image_id")))


def earlier_archive(out: Path, order_id: str, options: BatchOptions) -> EarlierArchive | None:
    """`out`, if it is this command's ZIP of the same order with the same options; else None."""
    manifest = read_manifest(out)
    if not manifest or manifest.get("order_id") != order_id:
        return None
    if _chosen_as_a_set(manifest.get("options")) != _chosen_as_a_set(json.loads(json.dumps(options.as_dict()))):
        return None
    try:
        members = {f"{f['set']}/{f['image_id']}": str(f["name"]) for f in manifest.get("files") or []}
        failures = [f for f in manifest.get("failures") or [] if isinstance(f, dict)]
        return EarlierArchive(out, members, int(manifest["total"]), int(manifest["failed"]), failures)
    except (KeyError, TypeError, ValueError):
        return None


def _chosen_as_a_set(options: object) -> object:
    """Options with their chosen photos in one order: a service lists them in the order's sort, the
    command line in Autoenhance's own."""
    if isinstance(options, dict) and isinstance(options.get("images"), list):
        return options | {"images": sorted(map(str, options["images"]))}
    return options


class ArchiveKeep:
    """A FolderKeep that also serves the members of an earlier ZIP (never writing into that ZIP)."""

    def __init__(self, inner: FolderKeep, earlier: EarlierArchive) -> None:
        self.inner, self.earlier = inner, earlier

    def load(self, key: str, spool: Spool) -> bool:
        if self.inner.load(key, spool):
            return True
        name = self.earlier.members.get(key)
        if name is None:
            return False
        try:
            with zipfile.ZipFile(self.earlier.path) as archive, archive.open(name) as member:
                while chunk := member.read(READ_CHUNK):
                    spool.write(chunk)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError):
            spool.reset()  # gone or damaged: downloaded again
            return False
        return True

    def save(self, key: str, spool: Spool) -> None:
        self.inner.save(key, spool)
