"""THE policy for "find or make this archive", used by every door (the streaming route, the job runner).

Given an order and options, `Archives.find_or_build` answers either with a `Finished` archive (this
instance's cache, the cache shared by every instance, or the result an identical in-flight build
left) or with a `Build`: a fresh batch the door consumes. The walk, in order:

1. this instance's disk cache (keyed by order, options and the order's `last_updated_at`);
2. single-flight: claim the key, or wait up to the door's `patience` for whoever holds it, then
   look for its result (the door's own reader first: a job reads its leader job's archive), then
   the local and shared caches; if the leader left nothing reusable, claim in its place;
3. as leader: the shared cache (REDIS_URL + S3_BUCKET), else build.

A leader whose caller reads slowly steps aside (`Build.stream`): the archive is made at its reader's
pace, so a follower waiting for it would wait on a stranger's connection. Once the reader leaves a
piece untaken for LEADER_READER_SECONDS the claim is landed with no result, and followers (streams
and jobs, on this instance or another) look, find nothing, and claim the work for themselves.

It owns the keys, the publishing (a `Build` streamed to a caller is teed into the local cache and,
once complete with no failure, shared) and the "archives served" counters, so a new door cannot
copy the walk with slightly different rules. Doors differ only in `tag` (who leads, for logs and
leader lookups) and `patience` (how long a caller can afford to wait for someone else).

Before any of that, a request that names an archive it already holds is answered here too:
`unchanged` (a 304: the named layout, or this instance's cached archive, is still this URL's) and
`resume` (a `Range` with `If-Range`: the recorded layout replayed from byte N, app/archives/resume.py),
so the door only parses the validators (app/api/ranges.py) and sends what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.archives.cache import ArchiveCache, CacheWriter
from app.archives.flights import Flight, Flights
from app.archives.layout_store import LayoutStore, Recording
from app.archives.numbering import Numbering
from app.archives.resume import PastEnd, Replay, StartOver, replay
from app.archives.shared import SharedCache
from app.core.engine import Batch, Engine
from app.core.models import BatchOptions, OrderInfo
from app.core.stats import Stats
from app.core.zip.format import Piece

log = logging.getLogger("app.archives")

STREAM_PATIENCE_SECONDS = 120.0
"""A streaming caller holds an open HTTP request: past two minutes browsers and proxies start giving
up, so it fetches by itself rather than wait longer for an identical request in flight."""
JOB_PATIENCE_SECONDS = 3600.0
"""A job has nobody on the line, so waiting for an identical run costs nothing; a dead leader's claim
lapses with its lease (FLIGHT_LEASE_SECONDS) long before this."""

LEADER_READER_SECONDS = 5.0
"""A leader whose reader leaves a piece (up to 1 MiB) untaken this long (slower than ~200 KiB/s) hands
its claim over: following it would tie followers to that reader's pace. A reader this slow takes
minutes for an order of a few hundred MB, which is what followers would otherwise wait."""

LeaderResult = Callable[[str], Awaitable["Finished | None"]]
"""A door's own reader of a leader's result, by the leader's tag (the job runner copies a job's archive)."""


@dataclass
class Finished:
    """An archive that exists already and is complete with no failure: serve or copy it, build nothing.

    `source` says where it came from: `hit` (this instance's cache), `shared` (another instance's, in
    S3) or `leader` (a door's own reader found and took the leader's result)."""

    source: str
    key: str
    total: int
    downloaded: int
    size: int
    path: Path | None = None
    """`hit`: the cached file on this machine."""
    chunks: Callable[[], AsyncIterator[bytes]] | None = None
    """`shared`: the bytes, streamed from S3."""
    copy_to: Callable[[str], Awaitable[bool]] | None = None
    """`shared`: a server-side copy to another object key of the bucket (False if the entry is gone)."""
    layout_id: str | None = None
    """The layout this archive was written from (its ETag), when recorded."""
    modified: float | None = None
    """The layout's time (its Last-Modified)."""
    flight: Flight | None = field(default=None, repr=False)

    async def release(self) -> None:
        """Let whoever waits for this key look again (call once the door recorded where its result is)."""
        if self.flight is not None:
            await self.flight.land()


@dataclass(frozen=True)
class NotModified:
    """The archive the caller names is still this URL's (a 304): its layout id (the ETag) and time."""

    layout_id: str
    modified: float


class Build:
    """No finished archive: this door makes it from `batch`. `stream()` tees it into the cache;
    `release()` (or `close()`, which also closes the batch) shares what was cached and lands the claim."""

    def __init__(self, archives: Archives, key: str, batch: Batch, flight: Flight | None) -> None:
        self._archives = archives
        self.key = key
        self.batch = batch
        self.flight = flight
        self.recording: Recording | None = None
        self._cached = False
        self._stepping_aside: asyncio.Task[None] | None = None

    async def record(self) -> Recording | None:
        """Start recording the layout (before the response starts: its id is the ETag); None if the
        layout store is unavailable (then no ETag and no resume, but the download goes on)."""
        self.recording = await self._archives.layouts.record(self.key, self.batch)
        return self.recording

    async def stream(self) -> AsyncIterator[Piece]:
        """The batch's bytes for a caller, teed into the cache; cached only if complete with no failure."""
        archives = self._archives
        batch = self.batch
        meta: dict[str, Any] = {"order_id": batch.order.order_id, "options": batch.options.as_dict()}
        meta["total"] = batch.total
        if self.recording is not None:
            meta |= {"layout_id": self.recording.layout.layout_id, "modified": self.recording.layout.created_at}
        writer: CacheWriter | None = archives.cache.writer(self.key, meta)
        complete = False
        loop = asyncio.get_running_loop()
        try:
            # aclosing: a caller who stops reading closes the archive (its feeder, downloads, spools) now,
            # not whenever the garbage collector finalises an abandoned generator
            async with contextlib.aclosing(batch.archive(self.recording)) as chunks:
                async for chunk in chunks:
                    if writer is not None:
                        writer.write(chunk)
                    archives.stats.sent(len(chunk))
                    if self.flight is None or self.flight.landed:
                        yield chunk
                        continue
                    slow = loop.call_later(LEADER_READER_SECONDS, self._step_aside)
                    try:
                        yield chunk  # returns when the reader has taken it
                    finally:
                        slow.cancel()
            complete = True
        finally:
            if writer is not None:
                if complete and batch.failed == 0:
                    writer.commit({"downloaded": batch.downloaded, "failed": 0})
                    self._cached = True
                else:
                    writer.discard()
            if complete:
                archives.count_served(partial=batch.failed > 0)
            else:
                log.warning(
                    "stream ended early", extra={"order_id": batch.order.order_id, "downloaded": batch.downloaded}
                )

    def _step_aside(self) -> None:
        """The reader holds this build back: land the claim now, so followers fetch for themselves."""
        if self.flight is None or self.flight.landed or self._stepping_aside is not None:
            return
        log.info("the leader's reader is slow; followers fetch for themselves", extra={"key": self.key})
        self._stepping_aside = asyncio.create_task(self.flight.land(), name=f"step-aside-{self.key[:8]}")

    async def release(self) -> None:
        """Share the entry this build cached (if any), then land the claim so followers find it."""
        if self.flight is None:
            return
        if self._stepping_aside is not None:
            await asyncio.gather(self._stepping_aside, return_exceptions=True)
        try:
            if self._cached:
                await self._archives.share(self.key)
        finally:
            await self.flight.land()

    async def close(self) -> None:
        """Release everything the build holds (its downloads, spools, then its claim), whatever fails."""
        try:
            await self.batch.aclose()
        finally:
            await self.release()


class Archives:
    """One per process: the local cache, single-flight, the shared cache and the counters, behind one walk."""

    def __init__(
        self,
        engine: Engine,
        cache: ArchiveCache,
        flights: Flights,
        shared: SharedCache | None,
        stats: Stats,
        layouts: LayoutStore,
        numbering: Numbering | None = None,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.flights = flights
        self.shared = shared
        self.stats = stats
        self.layouts = layouts
        self.numbering = numbering

    async def numbered(self, order: OrderInfo, options: BatchOptions) -> OrderInfo:
        """The order with the sequence numbers its archives keep (every door calls this before `key`,
        `find_or_build` or a resume, so a cached, a new and a resumed archive number alike)."""
        if self.numbering is None:
            return order
        return await self.numbering.apply(order, options)

    @staticmethod
    def key(order: OrderInfo, options: BatchOptions) -> str:
        """The cache key: order, options and order version, so a reprocessed order misses."""
        return ArchiveCache.key(order.order_id, options, f"{order.last_updated_at}|{order.arrangement()}")

    @staticmethod
    def flight_key(key: str) -> str:
        return f"zip:{key}"

    async def find_or_build(
        self,
        order: OrderInfo,
        options: BatchOptions,
        *,
        tag: str,
        patience: float,
        take_over: bool = False,
        leader_result: LeaderResult | None = None,
    ) -> Finished | Build:
        """A finished archive, or a build the caller must consume and `close()` (or `release()`).

        `tag` names this door's claim (`stream`, `job:<id>`); `take_over`: a claim held under the
        same tag is this door's dead previous attempt, taken over rather than waited for. Without
        a cache nor a `leader_result` a follower would find nothing, so no claim is made."""
        key = self.key(order, options)
        found = self._local(key)
        if found is not None:
            return found
        if not self.cache.enabled and leader_result is None:
            return await self.build(order, options, key, None)
        flight_key = self.flight_key(key)
        deadline = asyncio.get_running_loop().time() + patience
        while True:
            flight = await self.flights.claim(flight_key, tag, succeed=take_over)
            if flight is not None:
                return await self._lead(order, options, key, flight)
            leader = await self.flights.leader(flight_key)
            log.info("identical archive in the making; waiting for it", extra={"leader": leader, "door": tag})
            landed = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self.flights.wait(flight_key)
                    landed = True
            found = await leader_result(leader) if landed and leader and leader_result is not None else None
            found = found or self._local(key) or await self._shared(key)
            if found is not None:
                return found
            if not landed:  # a leader this slow: fetch ourselves rather than wait on
                return await self.build(order, options, key, None)

    async def _lead(self, order: OrderInfo, options: BatchOptions, key: str, flight: Flight) -> Finished | Build:
        try:
            found = await self._shared(key)  # made on another instance earlier
        except BaseException:
            await flight.land()
            raise
        if found is not None:
            found.flight = flight
            return found
        return await self.build(order, options, key, flight)

    async def build(self, order: OrderInfo, options: BatchOptions, key: str, flight: Flight | None) -> Build:
        """Open the batch (its downloads start); the claim, if any, is landed if that fails."""
        try:
            batch = await self.engine.open(order, options)
        except BaseException:
            if flight is not None:
                await flight.land()
            raise
        return Build(self, key, batch, flight)

    async def rebuild(self, order: OrderInfo, options: BatchOptions, found: Finished) -> Build:
        """A finished archive that could not be used after all (gone meanwhile): build it, keeping its claim."""
        return await self.build(order, options, found.key, found.flight)

    async def finished(self, order: OrderInfo, options: BatchOptions) -> Finished | None:
        """A finished archive if one exists (local, then shared cache), never a build: HEAD's answer."""
        key = self.key(order, options)
        return self._local(key) or await self._shared(key)

    async def unchanged(
        self, order: OrderInfo, options: BatchOptions, layout_ids: list[str], since: float | None
    ) -> NotModified | None:
        """A 304, before any batch opens: one of `layout_ids` (If-None-Match) is a complete layout of
        this order version and options where nothing failed, or this instance's cached archive was
        made no later than `since` (If-Modified-Since). The cached archive's ETag is the layout id of
        the stream that made it, so the layout store answers for it too."""
        key = self.key(order, options)
        for layout_id in layout_ids:
            layout = await self.layouts.load(layout_id)
            if layout is not None and layout.key == key and layout.complete and layout.failed == 0:
                return NotModified(layout.layout_id, layout.created_at)
        cached = self.cached_layout(key)
        if cached is not None and since is not None and cached[1] <= since:
            return NotModified(*cached)
        return None

    async def resume(
        self, order: OrderInfo, options: BatchOptions, layout_id: str, start: int
    ) -> Replay | PastEnd | StartOver:
        """The archive `layout_id` (If-Range) named, from byte `start`: a replay, or past its end; or
        start over with the whole archive when the layout is unknown, stale, of another URL, or the
        cached archive's own (its file answers the range itself)."""
        key = self.key(order, options)
        cached = self.cached_layout(key)
        if cached is not None and cached[0] == layout_id:
            return StartOver()
        layout = await self.layouts.load(layout_id)
        if layout is None or layout.key != key:
            return StartOver()
        return await replay(self.engine, self.layouts, layout, order, options, start)

    def cached_layout(self, key: str) -> tuple[str, float] | None:
        """(layout id, time) of this instance's cached archive for `key`: its ETag and Last-Modified
        (no hit counted, no LRU touch)."""
        meta = self.cache.peek(key)
        found = _validators(meta) if meta is not None else {}
        return (found["layout_id"], found["modified"]) if found else None

    def _local(self, key: str) -> Finished | None:
        hit = self.cache.lookup(key)
        if hit is None:
            return None
        meta = hit.meta
        return Finished(
            "hit", key, int(meta["total"]), int(meta["downloaded"]), hit.size, path=hit.path, **_validators(meta)
        )

    async def _shared(self, key: str) -> Finished | None:
        shared = self.shared
        if shared is None:
            return None
        meta = await shared.lookup(key)
        if meta is None:
            return None

        def chunks() -> AsyncIterator[bytes]:
            return shared.stream(key)

        async def copy_to(object_key: str) -> bool:
            return await shared.copy_to(key, object_key)

        total, downloaded, size = int(meta["total"]), int(meta["downloaded"]), int(meta["size"])
        return Finished(
            "shared", key, total, downloaded, size, chunks=chunks, copy_to=copy_to, **_validators(meta)
        )

    async def share(self, key: str) -> None:
        """Publish a committed local entry to the shared cache (logged, never raised: sharing is an optimisation)."""
        if self.shared is None:
            return
        local = self.cache.directory / f"{key}.zip"
        try:
            meta: dict[str, Any] = json.loads((self.cache.directory / f"{key}.json").read_text())
            await self.shared.publish(key, local, meta)
        except (OSError, ValueError) as exc:
            log.warning("could not share a cached archive", extra={"key": key, "error": str(exc)})

    async def aclose(self) -> None:
        await self.flights.aclose()
        await self.layouts.aclose()
        if self.numbering is not None:
            await self.numbering.aclose()
        if self.shared is not None:
            await self.shared.aclose()

    # -- the "archives served" counters (GET /api/stats, /metrics) --------------------------------------

    def cache_stats(self) -> dict[str, int]:
        """This instance's cache, for GET /api/stats."""
        return {"hits": self.cache.hits, "misses": self.cache.misses, "bytes": self.cache.size_bytes()}

    def count_served(self, size: int | None = None, *, partial: bool = False) -> None:
        """One archive handed over whole (app/core/stats.py, `Stats.served`)."""
        self.stats.served(size, partial=partial)


def _validators(meta: dict[str, Any]) -> dict[str, Any]:
    """The layout id and time a cache entry was recorded with (entries from before layouts: none)."""
    if "layout_id" not in meta:
        return {}
    return {"layout_id": str(meta["layout_id"]), "modified": float(meta["modified"])}
