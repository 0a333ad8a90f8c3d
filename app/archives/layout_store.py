"""Where archive layouts are kept: `<DATA_DIR>/layouts/<id>.jsonl`, or a Redis list with REDIS_URL.

A layout (app/core/zip/layout.py) is what lets a cut download resume, so it is kept whether or not the
archive cache is enabled, for the cache's TTL (a day when the cache is disabled): long enough for
a dropped download to be picked up again, short enough to stay small (a few hundred bytes per
member). Each event is appended and stored before the call returns, so a member is on record
before its first byte is handed to the response. With REDIS_URL every instance sees every layout,
so a resume may land on another instance than the download it continues.

Bounded, since every dropped download leaves one (a 1000-photo order's is ~100 KB): a layout stops
being recorded past MAX_LAYOUT_BYTES (a resume then refuses offsets past what it records); in Redis,
a layout lives INCOMPLETE_TTL_SECONDS until its archive is complete (then the full TTL), and beyond
MAX_REDIS_LAYOUTS the oldest are deleted, so the layouts of dropped streams cannot fill a Redis that
refuses writes when full (`noeviction`, which the job queue needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.redis_client import connect
from app.core.zip.layout import Layout, LayoutMember

if TYPE_CHECKING:
    from app.core.engine import Batch

log = logging.getLogger("app.layouts")

DEFAULT_TTL_SECONDS = 86400
INCOMPLETE_TTL_SECONDS = 3600
"""A cut download is usually resumed within minutes; after an hour its layout goes (a later resume
downloads the archive again from the start)."""
MAX_REDIS_LAYOUTS = 500
"""Layouts kept in Redis at once (the oldest are deleted first): ~50 MB at worst, ~5 MB typically."""
MAX_LAYOUT_BYTES = 512 * 1024
"""One layout's record: a few thousand members' lines."""
_APPEND_IF = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return 1
"""
_ID = re.compile(r"^[0-9a-f]{32}$")


def layout_id_of(etag: str | None) -> str | None:
    """The layout id an ETag (or If-Range / If-None-Match value) names, if it is one of ours."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/") or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None  # weak or malformed: never a strong match
    value = value[1:-1]
    return value if _ID.match(value) else None


class LayoutBackend(Protocol):
    async def append(self, layout_id: str, lines: list[str], *, create: bool = False) -> None: ...
    async def append_if(self, layout_id: str, expected: int, lines: list[str]) -> bool:
        """Append only if the record still holds `expected` lines (two resumes completing one layout)."""
    async def read(self, layout_id: str) -> list[str] | None: ...
    async def completed(self, layout_id: str) -> None:
        """The layout's archive is whole: keep it for the full TTL."""


class DiskLayouts:
    """One JSON-lines file per layout; expired files are removed on the next `begin`."""

    def __init__(self, directory: Path, ttl: int) -> None:
        self.directory = directory
        self.ttl = ttl
        directory.mkdir(parents=True, exist_ok=True)
        self._last_sweep = 0.0

    def _path(self, layout_id: str) -> Path:
        return self.directory / f"{layout_id}.jsonl"

    def _append(self, layout_id: str, lines: list[str], create: bool) -> None:
        if create:
            self._sweep()
        # one os.write with O_APPEND: the line lands whole at the end, and no file object is built per member
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | (os.O_EXCL if create else 0)  # as open()'s "x" and "a"
        fd = os.open(self._path(layout_id), flags, 0o644)
        try:
            data = "".join(f"{line}\n" for line in lines).encode()
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)

    async def append(self, layout_id: str, lines: list[str], *, create: bool = False) -> None:
        """A member's line is appended on the event loop: a few hundred bytes into the page cache
        (as the archive cache writes every byte of an archive), where a worker thread per member
        cost 0.2 CPU s per GB streamed in lock hand-offs (ENGINEERING_LOG.md, "Thread hops on the
        byte path"). The first append also sweeps expired files, a directory scan: that one goes to a thread."""
        if create:
            await asyncio.to_thread(self._append, layout_id, lines, create)
        else:
            self._append(layout_id, lines, create)

    def _append_if(self, layout_id: str, expected: int, lines: list[str]) -> bool:
        with open(self._path(layout_id), "a+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released on close; excludes other processes and threads
            file.seek(0)
            if sum(1 for line in file if line.strip()) != expected:
                return False
            file.write("".join(f"{line}\n" for line in lines))
            return True

    async def append_if(self, layout_id: str, expected: int, lines: list[str]) -> bool:
        return await asyncio.to_thread(self._append_if, layout_id, expected, lines)

    async def read(self, layout_id: str) -> list[str] | None:
        path = self._path(layout_id)
        try:
            if time.time() - path.stat().st_mtime > self.ttl:
                path.unlink(missing_ok=True)
                return None
            return (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
        except FileNotFoundError:
            return None

    async def completed(self, layout_id: str) -> None:
        return None  # the file's age counts from its last write, the completion

    def _sweep(self) -> None:
        now = time.time()
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        for path in self.directory.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > self.ttl:
                    path.unlink()


class RedisLayouts:
    """`<prefix>layout:<id>`: a list of lines, living INCOMPLETE_TTL_SECONDS until complete, then the
    TTL; `<prefix>layouts`: a sorted set of the ids by creation time, to delete the oldest beyond
    MAX_REDIS_LAYOUTS."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}layout:"
        self._index = f"{prefix}layouts"
        self.ttl = ttl
        self._append_if = redis.register_script(_APPEND_IF)

    async def append(self, layout_id: str, lines: list[str], *, create: bool = False) -> None:
        key = self._prefix + layout_id
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *lines)
            if create:
                pipe.expire(key, min(self.ttl, INCOMPLETE_TTL_SECONDS))
                pipe.zadd(self._index, {layout_id: now})
                pipe.zremrangebyscore(self._index, "-inf", now - self.ttl)  # their keys expired already
                pipe.expire(self._index, self.ttl)
                pipe.zcard(self._index)
            results = await pipe.execute()
        if create and (excess := int(results[-1]) - MAX_REDIS_LAYOUTS) > 0:
            popped: list[tuple[str, float]] = await self._redis.zpopmin(self._index, excess)  # type: ignore[assignment]
            oldest = [member for member, _ in popped]
            await self._redis.delete(*[self._prefix + old for old in oldest])

    async def completed(self, layout_id: str) -> None:
        await self._redis.expire(self._prefix + layout_id, self.ttl)

    async def append_if(self, layout_id: str, expected: int, lines: list[str]) -> bool:
        taken = await self._append_if(keys=[self._prefix + layout_id], args=[expected, *lines])
        return bool(taken)

    async def read(self, layout_id: str) -> list[str] | None:
        lines = await self._redis.lrange(self._prefix + layout_id, 0, -1)
        return [str(line) for line in lines] if lines else None

    async def aclose(self) -> None:
        await self._redis.aclose()


class Recording:
    """A layout being recorded (the engine's LayoutRecorder)."""

    def __init__(self, store: LayoutStore, layout: Layout) -> None:
        self._store = store
        self.layout = layout
        self.broken = False
        self._bytes = sum(len(line) + 1 for line in layout.lines())

    async def _append(self, lines: list[str]) -> bool:
        """Store lines; on a store failure, or past MAX_LAYOUT_BYTES, stop recording (logged) rather
        than fail the download.

        A record that stops early is still safe: a resume refuses an offset past what it records."""
        if self.broken:
            return False
        self._bytes += sum(len(line) + 1 for line in lines)
        if self._bytes > MAX_LAYOUT_BYTES:
            self.broken = True
            log.warning("layout recording stopped: too large", extra={"layout_id": self.layout.layout_id})
            return False
        try:
            await self._store.backend.append(self.layout.layout_id, lines)
        except (RedisError, OSError) as exc:
            self.broken = True
            log.warning("layout recording stopped", extra={"layout_id": self.layout.layout_id, "error": repr(exc)})
            return False
        return True

    async def member(self, member: LayoutMember) -> None:
        if await self._append([Layout.member_line(member)]):
            self.layout.members.append(member)

    async def finish(self, extras: list[LayoutMember]) -> None:
        lines = [Layout.member_line(m) for m in extras] + [Layout.complete_line()]
        if await self._append(lines):  # one append: the text members and the mark, all or nothing
            self.layout.members.extend(extras)
            self.layout.complete = True
            await self._completed()

    async def _completed(self) -> None:
        try:
            await self._store.backend.completed(self.layout.layout_id)
        except (RedisError, OSError) as exc:  # it keeps its short life: a resume after it starts over
            log.warning("layout kept briefly", extra={"layout_id": self.layout.layout_id, "error": repr(exc)})

    async def complete(self, members: list[LayoutMember]) -> bool:
        """A resume completing a cut layout: all its remaining members at once, only if no other
        resume completed it first (False: reload the record and use that completion)."""
        expected = 1 + len(self.layout.members)  # the header, a line per member; no `complete` yet
        lines = [Layout.member_line(m) for m in members] + [Layout.complete_line()]
        if not await self._store.backend.append_if(self.layout.layout_id, expected, lines):
            return False
        self.layout.members.extend(members)
        self.layout.complete = True
        await self._completed()
        return True


class LayoutStore:
    def __init__(self, backend: LayoutBackend) -> None:
        self.backend = backend

    @classmethod
    def for_settings(cls, data_dir: Path, redis_url: str | None, prefix: str, cache_ttl: int) -> LayoutStore:
        ttl = cache_ttl if cache_ttl > 0 else DEFAULT_TTL_SECONDS
        if redis_url:
            return cls(RedisLayouts(connect(redis_url), prefix, ttl))
        return cls(DiskLayouts(data_dir / "layouts", ttl))

    async def begin(self, layout: Layout) -> Recording:
        """Record a new layout (with whatever members it already holds)."""
        await self.backend.append(layout.layout_id, list(layout.lines()), create=True)
        return Recording(self, layout)

    async def record(self, key: str, batch: Batch) -> Recording | None:
        """Start recording a batch's archive; None (no ETag, no resume) if the store is unavailable."""
        failures = [f.as_dict() for f in batch.plan_failures]
        layout = Layout.new(
            key, batch.order.order_id, time.time(), batch.layout_plan, total_images=batch.total, plan_failures=failures
        )
        try:
            return await self.begin(layout)
        except (RedisError, OSError) as exc:  # resume is a convenience: never fail the download over it
            log.warning("could not record the archive's layout", extra={"error": repr(exc)})
            return None

    async def resume(self, layout: Layout) -> Recording:
        """Go on recording an existing layout (a resume completing it)."""
        return Recording(self, layout)

    async def load(self, layout_id: str) -> Layout | None:
        try:
            lines = await self.backend.read(layout_id)
        except (RedisError, OSError) as exc:
            log.warning("could not read a layout", extra={"layout_id": layout_id, "error": str(exc)})
            return None
        return None if lines is None else Layout.parse(lines)

    async def aclose(self) -> None:
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            await close()
