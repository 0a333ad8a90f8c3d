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

`replay` is the whole answer for a recorded layout of this URL: a `Replay` (its bytes from N, for a
206), `PastEnd` (N is past the end: 416) or `StartOver` (Autoenhance now serves different bytes:
the whole archive, 200). The door only sends it; the archive policy (app/archives/service.py)
decides which layout, if any, a request may resume.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from app.archives.layout_store import LayoutStore
from app.core.budget.local import OrderSlots
from app.core.delivery.selection import selected
from app.core.delivery.sets import Rendition
from app.core.engine import Engine
from app.core.models import BatchOptions, ImageInfo, OrderInfo
from app.core.plan import plan
from app.core.report import Summary, closing_files
from app.core.shared_files import Hold, Result
from app.core.spool import MemoryAccount, Spool
from app.core.stats import Stats
from app.core.zip.format import Piece, listing_ranks
from app.core.zip.layout import Layout, LayoutMember, LayoutRecorder
from app.core.zip.writer import Member, ZipWriter
from app.errors import ImageFailure

log = logging.getLogger("app.resume")


class LayoutChanged(Exception):
    """Autoenhance now serves different bytes for a recorded member: the old archive cannot go on."""


class LayoutRaced(Exception):
    """Another resume completed this cut layout first: reload the record and prepare again."""


@dataclass(frozen=True)
class PastEnd:
    """The resume offset is at or past the end of the recorded archive (a 416 naming its length)."""

    total: int
    etag: str


@dataclass(frozen=True)
class StartOver:
    """No resume: the layout cannot go on (Autoenhance changed), or another archive answers the range."""


@dataclass
class Replay:
    """A layout ready to be written from `start`: its members with data, and the hold on their files.

    The door sends `chunks()` and calls `aclose()` when the response ends, however it ends."""

    layout: Layout
    start: int
    total: int
    members: list[Member]
    hold: Hold
    fetched: list[str]
    stats: Stats

    @property
    def downloaded(self) -> int:
        """Image members of the archive (the complete layout's)."""
        return sum(1 for m in self.layout.members if m.image_id)

    async def chunks(self) -> AsyncIterator[Piece]:
        """The archive's bytes from `start`: the same ZIP the first response was, written from its layout."""
        ranks = listing_ranks(name for _, name in self.layout.plan)
        writer = ZipWriter(zip32_limit=self.layout.zip32_limit, start=self.start, ranks=ranks)
        for member in self.members:
            writer.feed(member)
        writer.finish()
        async for chunk in writer.chunks():
            self.stats.sent(len(chunk))
            yield chunk

    async def aclose(self) -> None:
        """Let go of the files (closed once no other resume of the layout holds them)."""
        await self.hold.aclose()


async def replay(
    engine: Engine, layouts: LayoutStore, layout: Layout, order: OrderInfo, options: BatchOptions, start: int
) -> Replay | PastEnd | StartOver:
    """`layout` (a recorded layout of this order version and options) from byte `start`: what to send.

    Another resume completing the same cut layout first is no failure: this one goes by its completion."""

    async def replay_of(recorded: Layout) -> Replay:
        return await prepare(engine, order, options, await layouts.resume(recorded), start)

    try:
        try:
            replayed = await replay_of(layout)
        except LayoutRaced:  # another resume completed it meanwhile: go by its completion
            reloaded = await layouts.load(layout.layout_id)
            if reloaded is None or not reloaded.complete:
                return StartOver()
            replayed = await replay_of(reloaded)
    except LayoutChanged as exc:
        log.warning("resume refused: upstream bytes changed", extra={"layout_id": layout.layout_id, "why": str(exc)})
        return StartOver()
    if start >= replayed.total:  # nothing to send: its spools go now, even if the caller is leaving
        await asyncio.shield(replayed.aclose())
        return PastEnd(replayed.total, layout.etag)
    extra = {"layout_id": layout.layout_id, "start": start, "refetched": replayed.fetched}
    log.info("resuming an archive", extra=extra)
    return replayed


def _not_needed() -> Iterator[Piece]:
    raise AssertionError("a member wholly before the resume offset was read")


Planned = dict[str, tuple[ImageInfo, Rendition]]
"""Member name -> (photo, delivery set): the order's plan (app/core/plan.py), the same for the same order version and options."""


def _planned(order: OrderInfo, options: BatchOptions) -> Planned:
    return {f.name: (f.image, f.rendition) for f in plan(order, options)}


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
        # the spool's disk failing otherwise (full is DISK_FULL): a failed file, not a failed resume
        except OSError as exc:
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
    planned = _planned(order, options)
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
        members.append(Member(m, chunks, modified, in_memory=in_memory))
    fetched = [name for name, value in results.items() if isinstance(value, Spool)]
    engine.stats.images(len(fetched))
    return Replay(layout, start, layout.total(), members, hold, fetched, engine.stats)


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
    summary = Summary(
        order,
        options,
        photos=len(order.images) + order.unidentified,
        total=layout.total_images,
        failures=[ImageFailure(**f) for f in layout.plan_failures],
    )
    added: list[LayoutMember] = []
    for name in unsent:
        got, (image, rendition) = results[name], planned[name]
        if isinstance(got, Spool):
            added.append(LayoutMember(name, got.size, got.crc32, image.image_id))
        else:
            reason, _, recovery = got.partition("\n")
            summary.fail(image.image_id, name, reason, recovery, rendition.set)
    files = [m for m in [*layout.members, *added] if m.image_id]
    summary.downloaded = len(files)
    for m in files:
        summary.sent(m, planned[m.name][1].set)
    added += [LayoutMember.of_text(name, data) for name, data in closing_files(summary)]
    if not await recorder.complete(added):
        raise LayoutRaced(layout.layout_id)
