"""Streaming ZIP output: members in, bytes out, with back-pressure and no recompression.

stream-zip writes the format (ZIP64 where needed, UTF-8 names, CRC and size checked against what
we declared). It is a synchronous generator, and its async wrapper parks a pool thread while it
waits for the next member, which can be seconds of upstream latency: twenty callers would starve
the default pool. So each archive drives the sync generator in its own thread; the event loop
feeds it members as they complete and takes chunks out, granting the thread at most a few chunks
of credit so a slow reader slows the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, stream_zip

CHUNK_SIZE = 1024 * 1024
CREDITS = 4
ZIP32_LIMIT = 0xFFFFFFFF
_HEADER_ALLOWANCE = 200  # local header + extra fields per member, rounded up


@dataclass
class Member:
    """One file of the archive; `chunks` runs in the writer thread, `written` on the event loop."""

    name: str
    size: int
    crc32: int
    chunks: Callable[[], Iterator[bytes]]
    modified_at: datetime
    written: Callable[[], None] = field(default=lambda: None)


class _End:
    pass


_END = _End()


class ZipWriter:
    """One archive being written: `feed()` members, `finish()`, and iterate `chunks()`."""

    def __init__(self, chunk_size: int = CHUNK_SIZE, zip32_limit: int = ZIP32_LIMIT) -> None:
        self._chunk_size = chunk_size
        self._zip32_limit = zip32_limit
        self._members: queue.SimpleQueue[Member | _End] = queue.SimpleQueue()
        self._out: asyncio.Queue[bytes | BaseException | _End] = asyncio.Queue()
        self._credits = threading.Semaphore(CREDITS)
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._offset_estimate = 0
        self._thread = threading.Thread(target=self._run, name="zip-writer", daemon=True)
        self._started = False
        self.bytes_out = 0

    def feed(self, member: Member) -> None:
        self._members.put(member)

    def finish(self) -> None:
        self._members.put(_END)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The archive's bytes; closing this iterator early stops the writer thread."""
        if not self._started:
            self._started = True
            self._thread.start()
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, BaseException):
                    raise item
                self.bytes_out += len(item)
                yield item
                self._credits.release()
        finally:
            self.stop()

    def stop(self) -> None:
        """Unblock and end the writer thread (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._members.put(_END)
        for _ in range(CREDITS + 1):
            self._credits.release()

    # -- writer thread ---------------------------------------------------------------------------

    def _method(self, member: Member) -> object:
        # Keep members 32-bit while every offset fits: some unzippers (Safari's among them)
        # mishandle ZIP64 members, and only archives past 4 GiB need them.
        self._offset_estimate += member.size + len(member.name.encode()) + _HEADER_ALLOWANCE
        if self._offset_estimate < self._zip32_limit:
            return NO_COMPRESSION_32(member.size, member.crc32)
        return NO_COMPRESSION_64(member.size, member.crc32)

    def _files(self) -> Iterator[tuple[str, datetime, int, object, Iterator[bytes]]]:
        previous: Member | None = None
        while True:
            if previous is not None:
                self._call_soon(previous.written)
                previous = None
            item = self._members.get()
            if isinstance(item, _End) or self._stop.is_set():
                return
            previous = item
            yield item.name, item.modified_at, stat.S_IFREG | 0o644, self._method(item), item.chunks()

    def _run(self) -> None:
        try:
            for chunk in stream_zip(self._files(), chunk_size=self._chunk_size):  # type: ignore[arg-type]
                self._credits.acquire()
                if self._stop.is_set():
                    return
                self._call_soon(self._out.put_nowait, chunk)
            self._call_soon(self._out.put_nowait, _END)
        except BaseException as exc:
            self._call_soon(self._out.put_nowait, exc)

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)
