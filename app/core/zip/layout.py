"""The layout of one archive, recorded as it streams, and the offset maths a resume needs.

A layout is everything the ZIP bytes depend on (app/core/zip/format.py): member order, names,
sizes, CRC-32s, one modification time and the ZIP64 switch point, plus the contents of the report
and manifest (they depend on what failed). Its id is the archive's strong ETag. It is recorded one
line per event (a header, one line per member written before that member's first byte leaves, a
last line when the archive is complete), so recording costs O(members) however large the order.

A resume at byte N needs the data of every member that ends after N, and nothing before it.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from app.core.zip.format import ZIP32_LIMIT, Entry, header_size, offsets, total_size

FORMAT_VERSION = 2
"""2: members carry the extended timestamp and the central directory is in plan order; a record of
version 1 describes other bytes, so it is not resumed (the client gets a fresh 200)."""


@dataclass(frozen=True)
class LayoutMember:
    """What one member of an archive is: an image (`image_id`) or a text member (`text`, the report
    or manifest), its name, size and CRC-32. The one description of a member: the layout records it,
    the writer writes it (with its data, app/core/zip/writer.py), the manifest lists it
    (app/core/report.py), and `entry` places it in the ZIP format."""

    name: str
    size: int
    crc32: int
    image_id: str | None = None
    text: str | None = None

    @classmethod
    def of_text(cls, name: str, data: bytes) -> LayoutMember:
        """A text member (the report, the manifest) holding `data`."""
        return cls(name, len(data), zlib.crc32(data), text=data.decode())

    def entry(self, modified: datetime, trusted: bool = False) -> Entry:
        """This member as the ZIP format writes it, with the archive's one time."""
        return Entry(self.name, self.size, self.crc32, modified, trusted)


@dataclass
class Layout:
    layout_id: str
    key: str
    """The archive cache's key (order, options, order version): a layout only answers that URL."""
    order_id: str
    created_at: int
    """Unix seconds; every member's modification time, so a replay writes the same headers."""
    plan: list[tuple[str, str]] = field(default_factory=list)
    """(image id, member name) of every file the archive meant to hold, in plan order. A photo has a
    file per delivery set, so the member name (unique in the archive) is the identity."""
    zip32_limit: int = ZIP32_LIMIT
    total_images: int = 0
    plan_failures: list[dict[str, Any]] = field(default_factory=list)
    """Images known to be missing before any download (skipped, unidentified), for the report."""
    members: list[LayoutMember] = field(default_factory=list)
    complete: bool = False

    @classmethod
    def new(
        cls,
        key: str,
        order_id: str,
        created_at: float,
        plan: list[tuple[str, str]],
        *,
        total_images: int = 0,
        plan_failures: list[dict[str, Any]] | None = None,
        zip32_limit: int = ZIP32_LIMIT,
    ) -> Layout:
        """A fresh layout; its time is rounded down to DOS time's 2-second step."""
        created = int(created_at) // 2 * 2
        return cls(uuid.uuid4().hex, key, order_id, created, plan, zip32_limit, total_images, plan_failures or [])

    @property
    def etag(self) -> str:
        return f'"{self.layout_id}"'

    @property
    def modified(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)

    @property
    def failed(self) -> int:
        """Images missing from a complete layout: skipped at plan time, or planned and not in it."""
        sent = {m.name for m in self.members if m.image_id is not None}
        return len(self.plan_failures) + sum(1 for _, name in self.plan if name not in sent)

    def entries(self) -> list[Entry]:
        modified = self.modified
        return [m.entry(modified) for m in self.members]

    def total(self) -> int:
        """The archive's exact length (only meaningful once complete)."""
        return total_size(self.entries(), self.zip32_limit)

    def needed_from(self, start: int) -> list[int]:
        """Indexes of the members whose bytes do not all lie before `start` (their data must be read)."""
        entries = self.entries()
        where, _ = offsets(entries, self.zip32_limit)
        needed = []
        for index, (entry, offset) in enumerate(zip(entries, where, strict=True)):
            if offset + header_size(entry, offset, self.zip32_limit) + entry.size > start:
                needed.append(index)
        return needed

    def recorded_end(self) -> int:
        """Where the recorded members end: a cut stream cannot have sent a byte past it."""
        return offsets(self.entries(), self.zip32_limit)[1]

    def unsent(self) -> list[tuple[str, str]]:
        """Planned files with no member yet (never sent, or failed before the cut)."""
        sent = {m.name for m in self.members if m.image_id is not None}
        return [(image_id, name) for image_id, name in self.plan if name not in sent]

    # -- the record: one JSON line per event -----------------------------------------------------

    def header_line(self) -> str:
        head = {k: v for k, v in asdict(self).items() if k not in ("members", "complete")}
        return json.dumps({"v": FORMAT_VERSION, "layout": head}, ensure_ascii=False)

    @staticmethod
    def member_line(member: LayoutMember) -> str:
        return json.dumps({"member": {k: v for k, v in asdict(member).items() if v is not None}}, ensure_ascii=False)

    @staticmethod
    def complete_line() -> str:
        return json.dumps({"complete": True})

    def lines(self) -> Iterator[str]:
        yield self.header_line()
        for member in self.members:
            yield self.member_line(member)
        if self.complete:
            yield self.complete_line()

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Layout | None:
        """A layout from its record; None when the record is unreadable or of another version."""
        layout: Layout | None = None
        try:
            for line in lines:
                if not line.strip():
                    continue
                event: dict[str, Any] = json.loads(line)
                if layout is None:
                    if event.get("v") != FORMAT_VERSION:
                        return None
                    head = event["layout"]
                    head["plan"] = [tuple(p) for p in head["plan"]]
                    layout = cls(**head)
                elif "member" in event:
                    layout.members.append(LayoutMember(**event["member"]))
                elif event.get("complete"):
                    layout.complete = True
        except (ValueError, KeyError, TypeError):
            return None
        return layout


class LayoutRecorder(Protocol):
    """Where a streaming archive records its layout; each call returns once the event is stored."""

    layout: Layout

    async def member(self, member: LayoutMember) -> None:
        """An image member, before its first byte is written."""

    async def finish(self, extras: list[LayoutMember]) -> None:
        """The text members (report, manifest), stored with the mark that the layout is complete."""

    async def complete(self, members: list[LayoutMember]) -> bool:
        """Every remaining member of a cut layout at once; False when another resume completed it first."""
