"""The one place that knows how an order becomes a ZIP: plan, fetch, archive.

Every door (the streaming route, jobs, the CLI through them) opens a `Batch` here and only decides
where its bytes go. A batch downloads images concurrently under the fair budget, spools each one,
and hands it to the archive as it completes. An image gives its download slot back as soon as it is
spooled: the budget is shared by every caller, and a slow reader must wait on its own spool, never
on slots others need. Back-pressure is per batch instead: its spools hold at most
SPOOL_REQUEST_MEMORY_BYTES in memory (the rest on disk), and its next downloads wait for the reader,
before they take a slot, while another file would not fit in that memory and the reader keeps
taking files; a reader that paused lets downloads run on, onto disk, until SPOOL_AHEAD_BYTES wait
for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.budget.local import FairLimiter, OrderSlots
from app.core.delivery.selection import selected
from app.core.delivery.sets import Rendition, renditions
from app.core.models import BatchOptions, ImageInfo, OrderInfo
from app.core.plan import plan
from app.core.report import Summary, closing_files
from app.core.shared_files import SharedFiles
from app.core.spool import MemoryAccount, MemoryGauge, Spool
from app.core.stats import Stats
from app.core.upstream.byte_caps import fetch_within_caps
from app.core.upstream.client import AutoenhanceClient, ImageDownloadFailed
from app.core.zip.format import ZIP32_LIMIT, Piece, listing_ranks
from app.core.zip.layout import LayoutMember, LayoutRecorder
from app.core.zip.writer import Member, ZipWriter
from app.errors import EmptyOrder, ImageFailure, OrderTooLarge

if TYPE_CHECKING:
    from app.core.budget.shared import SharedBudget
    from app.core.spool import Keep

log = logging.getLogger("app.engine")

RECOVER_WAIT = "Wait until the image shows status 'processed' on Autoenhance, then retry the batch"
RECOVER_UPSTREAM = "Reprocess or re-upload the image on Autoenhance (POST /v3/images/{image_id}/process)"
READER_PAUSE_SECONDS = 1.0
"""A reader that took no file for this long has paused: a batch's downloads may then wait on disk."""


Obtain = Callable[[str, Rendition, Spool], Awaitable[None]]
"""Fills a spool with one file: the client's `download_enhanced`, or a batch's own (saved copy first)."""


@dataclass(frozen=True)
class NotDownloaded:
    """A file the upstream client could not get (refused, failing, too large): the report's two lines."""

    reason: str
    recovery: str


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL = NotDownloaded(
    "not stored: the service's disk is full (images over SPOOL_MEMORY_BYTES wait on disk)",
    "Retry the batch later; the operator must free space in DATA_DIR",
)


def _disk_full(exc: OSError, image_id: str) -> NotDownloaded:
    """DISK_FULL for ENOSPC/EDQUOT (logged for the operator); any other OSError is raised again."""
    if exc.errno not in DISK_FULL_ERRNOS:
        raise exc
    log.error("disk full: an image could not be spooled", extra={"image_id": image_id})
    return DISK_FULL


@dataclass
class _Done:
    """A file spooled and waiting for the writer: the member it becomes, its set (for the manifest)."""

    member: LayoutMember
    set: str
    spool: Spool
    written: asyncio.Event


@dataclass(frozen=True)
class EngineLimits:
    per_order: int
    max_images: int
    spool_dir: Path
    spool_memory_bytes: int
    max_image_bytes: int
    request_memory_bytes: int = 16 * 1024 * 1024
    """SPOOL_REQUEST_MEMORY_BYTES: one batch's (or resume's) spools together, in memory."""
    ahead_bytes: int = 64 * 1024 * 1024
    """SPOOL_AHEAD_BYTES: a batch's downloads wait for its reader once this much is spooled, unwritten."""


class Engine:
    """Shared by every request: the upstream client, the global budget and the limits."""

    def __init__(
        self,
        client: AutoenhanceClient,
        limiter: FairLimiter,
        limits: EngineLimits,
        stats: Stats,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.limits = limits
        self.stats = stats
        self.shared_budget = shared_budget
        """With REDIS_URL and SHARED_BUDGET: the budget across instances, taken after the local slot."""
        self.active_batches = 0
        self.spool_memory = MemoryGauge()
        """Bytes every spool of the process holds in memory (GET /api/stats, /metrics)."""
        self.shared_files = SharedFiles()
        """Files resumes are fetching or holding, shared by resumes of the same layout (app/archives/resume.py)."""

    def memory_account(self) -> MemoryAccount:
        """One request's share of spool memory (SPOOL_REQUEST_MEMORY_BYTES), counted in `spool_memory`."""
        return MemoryAccount(self.limits.request_memory_bytes, self.spool_memory)

    def order_slots(self, key: Hashable) -> OrderSlots:
        """One order's share of the download budget: its own cap, the fair global one, the shared one if any."""
        shared = self.shared_budget.slot if self.shared_budget is not None else None
        return OrderSlots(self.limiter, key=key, per_order=self.limits.per_order, shared=shared)

    @asynccontextmanager
    async def download(
        self,
        slots: OrderSlots,
        image_id: str,
        rendition: Rendition,
        obtain: Obtain | None = None,
        memory: MemoryAccount | None = None,
    ) -> AsyncIterator[Spool | NotDownloaded]:
        """Spool one file under a slot of `slots`, held until the block ends; yields the spool or why not.

        A live batch and a resume fetch files alike, and both leave the block at once, so the slot
        goes back as soon as the file is spooled. `memory`: the request's account the spool keeps
        its bytes in (past it, disk). A full spool disk is one file's failure, worded alike for both
        (DISK_FULL). The spool is closed on a failure, on cancellation and when the block raises;
        otherwise the caller owns it.
        """
        spool = self._new_spool(image_id, memory)
        if isinstance(spool, NotDownloaded):
            yield spool
            return
        try:
            async with slots.slot():
                outcome: Spool | NotDownloaded = spool
                try:
                    await (obtain or self._fetch)(image_id, rendition, spool)
                except ImageDownloadFailed as exc:
                    spool.close()
                    outcome = NotDownloaded(exc.reason, exc.recovery)
                except OSError as exc:
                    outcome = _disk_full(exc, image_id)
                    spool.close()
                yield outcome
        except BaseException:
            spool.close()
            raise

    async def _fetch(self, image_id: str, rendition: Rendition, spool: Spool) -> None:
        """The default way to get a file: from Autoenhance, within its set's byte cap and height."""
        await fetch_within_caps(self.client, image_id, rendition, spool)

    def _new_spool(self, image_id: str, memory: MemoryAccount | None) -> Spool | NotDownloaded:
        limits = self.limits
        try:
            return Spool(limits.spool_dir, limits.spool_memory_bytes, limits.max_image_bytes, memory)
        except OSError as exc:  # SPOOL_MEMORY_BYTES=0: the spool file itself (an inode) is refused
            return _disk_full(exc, image_id)

    def check(self, order: OrderInfo) -> None:
        """Refuse an order no batch can serve (empty, or over MAX_IMAGES_PER_ORDER)."""
        count = len(order.images) + order.unidentified
        if count == 0:
            raise EmptyOrder(f"Order {order.order_id} has no images")
        if count > self.limits.max_images:
            raise OrderTooLarge(
                f"Order {order.order_id} has {count} images, over this service's limit of "
                f"{self.limits.max_images} (MAX_IMAGES_PER_ORDER)"
            )

    async def open(self, order: OrderInfo, options: BatchOptions, *, keep: Keep | None = None) -> Batch:
        """Plan the order and start its downloads; the caller must consume or close the batch.

        `keep` (the CLI's direct mode) saves each downloaded file and serves it again on a rerun.
        """
        self.check(selected(order, options))
        batch = Batch(self, order, options, keep)
        try:
            batch.start()
        except BaseException:  # planning failed part-way: what started must not hold its slots
            await batch.aclose()
            raise
        return batch


class Batch:
    """One order being turned into one archive."""

    def __init__(self, engine: Engine, order: OrderInfo, options: BatchOptions, keep: Keep | None = None) -> None:
        self.engine = engine
        self.order = order = selected(order, options)  # the chosen photos only, each keeping its number
        self.options = options
        self.keep = keep
        self.summary = Summary(
            order,
            options,
            photos=len(order.images) + order.unidentified,
            total=len(order.images) * len(renditions(options)) + order.unidentified,
        )
        """What this archive holds and misses, as it streams: its report and manifest are written from it."""
        self.reused = 0
        """Files served from `keep` (saved by an earlier, interrupted run) instead of downloaded."""
        self.layout_plan: list[tuple[str, str]] = []  # (image id, member name) of each file fetched
        self.plan_failures: list[ImageFailure] = []  # known before any download (skipped, unidentified)
        self.started_at = time.monotonic()
        self._slots = engine.order_slots(id(self))
        self.memory = engine.memory_account()
        self._gate = asyncio.Semaphore(engine.limits.per_order)  # files waiting for room: a handful, not the order
        self._ahead = 0  # bytes spooled and not yet written into the archive
        self._taken = asyncio.Event()  # the reader took a member: room ahead may have come back
        self._last_taken = time.monotonic()  # when it last did (the batch's start counts as one)
        self._downloading = 0  # downloads past `_room`, not yet spooled
        self._largest = 0  # the largest file spooled so far: what the next one is expected to need
        self.waited_on_disk = 0
        """Files handed to the reader from a spool on disk (past the request's memory, or too large for it)."""
        self._ready: asyncio.Queue[_Done | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outstanding = 0
        self._fetching = 0  # downloads started; each one ends with one item in `_ready`
        self._settled = asyncio.Event()  # first success, or nothing left to try
        self._closed = False

    @property
    def total(self) -> int:
        """Files planned: one per photo and delivery set (entries without an id count once)."""
        return self.summary.total

    @property
    def downloaded(self) -> int:
        return self.summary.downloaded

    @property
    def failures(self) -> list[ImageFailure]:
        return self.summary.failures

    @property
    def failed(self) -> int:
        return self.summary.failed

    @property
    def finished(self) -> int:
        return self.downloaded + self.failed

    # -- downloads -------------------------------------------------------------------------------

    def start(self) -> None:
        """Plan every file, then start the downloads (planning first: a failure there starts nothing)."""
        self.engine.active_batches += 1
        planned = plan(self.order, self.options)
        for index in range(self.order.unidentified):
            self._fail(
                "(unknown)",
                f"unidentified image #{index + 1}",
                "the order lists this image without an id",
                "Check the order on Autoenhance; this entry cannot be downloaded",
            )
        for file in planned:
            image, rendition, name = file.image, file.rendition, file.name
            skip = image.skip_reason() if rendition.endpoint == "enhanced" else None
            if skip is not None:
                recovery = RECOVER_UPSTREAM if (image.status or "").lower() in ("error", "expired") else RECOVER_WAIT
                self._fail(image.image_id, name, skip, recovery, rendition.set)
                continue
            self.layout_plan.append((image.image_id, name))
            self._outstanding += 1
            self._fetching += 1
            task = asyncio.create_task(self._fetch(image, rendition, name), name=f"fetch-{image.image_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.plan_failures = list(self.failures)
        if self._outstanding == 0:
            self._settled.set()

    def _fail(self, image_id: str, name: str, reason: str, recovery: str, set_name: str | None = None) -> None:
        self.summary.fail(image_id, name, reason, recovery, set_name)
        log.warning("image failed", extra={"order_id": self.order.order_id, "image_id": image_id, "reason": reason})

    async def _obtain(self, image_id: str, rendition: Rendition, spool: Spool) -> None:
        """The file from `keep` if an earlier run saved it, else from Autoenhance (then saved)."""
        key = f"{rendition.set}/{image_id}"
        if self.keep is not None and await asyncio.to_thread(self.keep.load, key, spool):
            self.reused += 1
            return
        await fetch_within_caps(self.engine.client, image_id, rendition, spool)
        if self.keep is not None:
            await asyncio.to_thread(self.keep.save, key, spool)

    async def _room(self) -> None:
        """Wait until the next download has room ahead of the reader; with nothing waiting for the reader
        a download always starts (so a bound of 0 means one file ahead), and one may overshoot by a file.

        While the reader keeps taking files, room is memory: a file that would not fit in the request's
        (SPOOL_REQUEST_MEMORY_BYTES) would be written to disk only to be read back a moment later, which
        cost the byte path about a quarter of its CPU. A reader that took nothing for READER_PAUSE_SECONDS
        has paused: downloads then run on, onto disk, until SPOOL_AHEAD_BYTES wait for it."""
        limits = self.engine.limits
        while self._ahead:
            if self._ahead >= limits.ahead_bytes:
                wait: float | None = None
            elif self._fits_in_memory():
                return
            else:
                wait = self._last_taken + READER_PAUSE_SECONDS - time.monotonic()
                if wait <= 0:
                    return
            self._taken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._taken.wait()

    def _fits_in_memory(self) -> bool:
        """Whether what waits for the reader, the downloads under way and one more file (each as large as
        the largest so far) fit in the request's memory. Files too large for it (SPOOL_MEMORY_BYTES, or
        the request's whole memory, 0 included) go to disk anyway: waiting would only slow them."""
        largest = self._largest
        if largest > min(self.engine.limits.spool_memory_bytes, self.memory.limit):
            return True
        return self._ahead + (self._downloading + 1) * largest <= self.memory.limit

    async def _fetch(self, image: ImageInfo, rendition: Rendition, name: str) -> None:
        handed_over = False
        try:
            async with self._gate:
                await self._room()
                self._downloading += 1
                try:
                    async with self.engine.download(self._slots, image.image_id, rendition, self._obtain, self.memory) as got:
                        pass  # the slot goes back now: the file waits in its spool, not in the budget
                finally:
                    self._downloading -= 1
            if isinstance(got, NotDownloaded):
                self._fail(image.image_id, name, got.reason, got.recovery, rendition.set)
                return
            self.summary.downloaded += 1
            self._largest = max(self._largest, got.size)
            self.waited_on_disk += int(got.on_disk)
            log.info(
                "image downloaded",
                extra={"order_id": self.order.order_id, "image_id": image.image_id, "bytes": got.size},
            )
            done = _Done(LayoutMember(name, got.size, got.crc32, image.image_id), rendition.set, got, asyncio.Event())
            self._ready.put_nowait(done)
            handed_over = True
            self._settled.set()
            self._ahead += got.size
            try:
                await done.written.wait()  # the spool waits for the reader; the budget does not
            finally:
                self._ahead -= got.size
                self._last_taken = time.monotonic()
                self._taken.set()
                got.close()  # its member is written (or the batch is closing)
        except Exception as exc:  # a bug, not an upstream failure: report it and keep the batch going
            if not handed_over:
                log.exception("unexpected error fetching image", extra={"image_id": image.image_id})
                self._fail(
                    image.image_id,
                    name,
                    f"internal error ({type(exc).__name__})",
                    "Retry the batch; report this if it persists",
                    rendition.set,
                )
        finally:
            if not handed_over:
                self._ready.put_nowait(None)
            self._outstanding -= 1
            if self._outstanding == 0:
                self._settled.set()

    async def wait_first(self) -> bool:
        """Wait for the first image to succeed; False when every image failed."""
        await self._settled.wait()
        return self.downloaded > 0

    async def wait_all(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- archive ---------------------------------------------------------------------------------

    async def archive(self, recorder: LayoutRecorder | None = None) -> AsyncGenerator[Piece, None]:
        """The ZIP: images in completion order, then the report (if anything failed) and manifest;
        its central directory lists them in plan order (set, then photo), see zipformat.listing_ranks.

        With a `recorder`, each member is on record before its first byte is written, and every
        member carries the layout's time, so the archive can be replayed from any offset."""
        ranks = listing_ranks(name for _, name in self.layout_plan)
        limit = recorder.layout.zip32_limit if recorder is not None else ZIP32_LIMIT
        writer = ZipWriter(zip32_limit=limit, ranks=ranks)
        feeder = asyncio.create_task(self._feed(writer, recorder), name=f"feed-{self.order.order_id}")
        try:
            async for chunk in writer.chunks():
                yield chunk
            await feeder
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)  # its failure was raised through the writer
            await self.aclose()

    async def _feed(self, writer: ZipWriter, recorder: LayoutRecorder | None) -> None:
        """Hand members to the writer; a failure here (the layout record, the report, the manifest)
        fails the writer, so the archive ends with the error instead of waiting for a member forever."""
        try:
            await self._feed_members(writer, recorder)
        except BaseException as exc:
            writer.fail(exc)
            raise

    async def _feed_members(self, writer: ZipWriter, recorder: LayoutRecorder | None) -> None:
        now = recorder.layout.modified if recorder is not None else datetime.now(UTC)
        for _ in range(self._fetching):
            done = await self._ready.get()
            if done is None:
                continue
            self.summary.sent(done.member, done.set)
            if recorder is not None:
                await recorder.member(done.member)
            spool = done.spool
            # in memory, the chunks are the very bytes the spool CRC'd on arrival: no second pass
            in_memory = not spool.on_disk
            writer.feed(Member(done.member, spool.chunks, now, done.written.set, in_memory, in_memory))
        if self._closed:  # abandoned (the caller left): the Nones above were cancellations, not failures
            return
        extras = closing_files(self.summary)
        texts = [LayoutMember.of_text(name, data) for name, data in extras]
        if recorder is not None:
            await recorder.finish(texts)
        for text, (_, data) in zip(texts, extras, strict=True):
            writer.feed(Member(text, functools.partial(iter, (data,)), now, in_memory=True))
        writer.finish()
        self._log_totals()

    def _log_totals(self) -> None:
        log.info(
            "batch finished",
            extra={
                "order_id": self.order.order_id,
                "total": self.total,
                "downloaded": self.downloaded,
                "failed": self.failed,
                "seconds": round(time.monotonic() - self.started_at, 3),
            },
        )

    async def aclose(self) -> None:
        """Cancel what is still downloading and release every spool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.engine.active_batches -= 1
        # Counted here, once per batch, whichever door opened it and however it ended.
        self.engine.stats.images(self.downloaded, self.failed, self.waited_on_disk)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        while not self._ready.empty():
            done = self._ready.get_nowait()
            if done is not None:
                done.spool.close()
