"""Continue a recorded archive from byte N: exactly the bytes the uninterrupted response had from N.

A 206 must state `Content-Range: bytes N-M/TOTAL` before its first byte, so everything the rest of
the archive depends on is settled first: every recorded member that ends after N is fetched again
and must match its recorded size and CRC-32 (else `LayoutChanged`: the caller answers a fresh 200,
never a splice); when the cut came before the layout was complete, the planned images never sent
are fetched too, appended after the recorded ones in plan order, and the report and manifest are
written and recorded. Members wholly before N are not fetched. Downloads here release their budget
slot once spooled (they must all be in hand before the first byte), so a resume of a cut stream
holds its remaining images in spools until they are written: at most SPOOL_REQUEST_MEMORY_BYTES of
them in memory, the rest on disk. Resumes of the same layout at the same time share those files
(app/core/shared_files.py): each is downloaded once, and one memory account covers them all.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from app.core.budget.local import OrderSlots
from app.core.delivery.selection import selected
from app.core.delivery.sets import Rendition
from app.core.engine import Batch, Engine
from app.core.models import BatchOptions, ImageInfo, OrderInfo
from app.core.report import closing_files
from app.core.shared_files import Hold, Result
from app.core.spool import MemoryAccount, Spool
from app.core.zip.format import Piece
from app.core.zip.layout import Layout, LayoutMember, LayoutRecorder
from app.core.zip.writer import Member
from app.errors import ImageFailure


class LayoutChanged(Exception):
    """Autoenhance now serves different bytes for a recorded member: the old archive cannot go on."""


class LayoutRaced(Exception):
    """Another resume completed this cut layout first: reload the record and prepare again."""


@dataclass
class _Summary:
    """The report's view of the completed archive (app/core/report.py's Batch protocol)."""

    order: OrderInfo
    options: BatchOptions
    photos: int
    total: int
    downloaded: int
    failures: list[ImageFailure]
    members: list[dict[str, object]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


@dataclass
class Replay:
    """A layout ready to be written from `start`: its members with data, and the hold on their files."""

    layout: Layout
    start: int
    total: int
    members: list[Member]
    hold: Hold
    fetched: list[str]

    async def aclose(self) -> None:
        """Let go of the files (closed once no other resume of the layout holds them)."""
        await self.hold.aclose()


def _not_needed() -> Iterator[bytes]:
    raise AssertionError("a member wholly before the resume offset was read")


Planned = dict[str, tuple[ImageInfo, Rendition]]
"""Member name -> (photo, delivery set): the engine's own plan, the same for the same order version and options."""


def _planned(engine: Engine, order: OrderInfo, options: BatchOptions) -> Planned:
    return {name: (image, rendition) for image, rendition, name in Batch(engine, order, options).plan()}


def _hold(engine: Engine, layout: Layout) -> Hold:
    """This resume's place among the resumes of `layout`: their files, memory account and budget share."""

    def context() -> tuple[MemoryAccount, OrderSlots]:
        return engine.memory_account(), engine.order_slots(("resume", layout.layout_id))

    return engine.shared_files.join(layout.layout_id, context)


async def _fetch(engine: Engine, planned: Planned, names: list[str], hold: Hold) -> dict[str, Result]:
    """Each file spooled (or the reason it failed, then its recovery), under the same fair budget as a
    batch; a file another resume of this layout is fetching or holding is taken from it."""
    memory, slots = hold.group.context

    async def one(name: str) -> Result:
        image, rendition = planned[name]
        try:
            async with engine.download(slots, image.image_id, rendition, memory=memory) as got:
                pass  # the slot goes back at once: the file waits in its spool for the first byte
        except OSError as exc:  # the spool's disk failing otherwise (full is DISK_FULL): a failed file, not a failed resume
            return f"not stored: {exc.strerror or type(exc).__name__}\nRetry the batch later"
        return got if isinstance(got, Spool) else f"{got.reason}\n{got.recovery}"

    return await hold.results(names, one)


async def prepare(
    engine: Engine, order: OrderInfo, options: BatchOptions, recorder: LayoutRecorder, start: int
) -> Replay:
    """Fetch and check what the bytes from `start` need; complete (and record) the layout if it was cut short."""
    layout = recorder.layout
    order = selected(order, options)  # the report counts the chosen photos, as the live batch did
    if not layout.complete and start > layout.recorded_end():
        # the caller holds bytes the record does not cover (recording stopped early): no honest splice
        raise LayoutChanged(f"offset {start} is past the recorded members (they end at {layout.recorded_end()})")
    needed = set(layout.needed_from(start))
    recorded = [m.name for i, m in enumerate(layout.members) if i in needed and m.image_id]
    unsent = [] if layout.complete else [name for _, name in layout.unsent()]
    planned = _planned(engine, order, options)
    if any(name not in planned for name in [m.name for m in layout.members if m.image_id] + unsent):
        raise LayoutChanged("the order's plan no longer names every recorded file")
    hold = _hold(engine, layout)
    try:
        results = await _fetch(engine, planned, recorded + unsent, hold)
        by_name = {m.name: m for m in layout.members if m.image_id}
        for name in recorded:
            got, want = results[name], by_name[name]
            if not isinstance(got, Spool) or got.size != want.size or got.crc32 != want.crc32:
                found = got if isinstance(got, str) else f"{got.size} bytes, CRC-32 {got.crc32:08x}"
                raise LayoutChanged(f"{name}: recorded {want.size} bytes, CRC-32 {want.crc32:08x}; now {found}")
        if not layout.complete:
            await _complete(order, options, recorder, planned, unsent, results)
    except BaseException:
        await hold.aclose()
        raise
    modified = layout.modified
    members = []
    for m in layout.members:
        chunks: Callable[[], Iterator[Piece]] = _not_needed
        in_memory = True  # text, and members before the resume point (never read)
        if m.text is not None:
            chunks = functools.partial(iter, (m.text.encode(),))
        elif isinstance(held := results.get(m.name), Spool):
            chunks, in_memory = held.chunks, not held.on_disk
        members.append(Member(m.name, m.size, m.crc32, chunks, modified, in_memory=in_memory))
    fetched = [name for name, value in results.items() if isinstance(value, Spool)]
    engine.stats.images_downloaded += len(fetched)
    return Replay(layout, start, layout.total(), members, hold, fetched)


async def _complete(
    order: OrderInfo,
    options: BatchOptions,
    recorder: LayoutRecorder,
    planned: Planned,
    unsent: list[str],
    results: dict[str, Spool | str],
) -> None:
    """Append the files never sent (plan order), then record the report and manifest."""
    layout = recorder.layout
    failures = [ImageFailure(**f) for f in layout.plan_failures]
    added: list[LayoutMember] = []
    for name in unsent:
        got, (image, rendition) = results[name], planned[name]
        if isinstance(got, Spool):
            added.append(LayoutMember(name, got.size, got.crc32, image.image_id))
        else:
            reason, _, recovery = got.partition("\n")
            recovery = recovery.replace("{image_id}", image.image_id)
            failures.append(ImageFailure(image.image_id, name, reason, recovery, rendition.set))
    files = [m for m in [*layout.members, *added] if m.image_id]
    summary = _Summary(
        order,
        options,
        len(order.images) + order.unidentified,
        layout.total_images,
        len(files),
        failures,
        [{"image_id": m.image_id, "name": m.name, "set": planned[m.name][1].set, "bytes": m.size} for m in files],
    )
    added += [LayoutMember(n, len(d), zlib.crc32(d), text=d.decode()) for n, d in closing_files(summary)]
    if not await recorder.complete(added):
        raise LayoutRaced(layout.layout_id)
