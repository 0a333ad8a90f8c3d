"""Streaming ZIP output: members in, bytes out, with back-pressure and no recompression.

app/core/zipformat.py writes the format (ZIP64 where needed, UTF-8 names, CRC and size checked
against what we declared), deterministically, so a resumed download can be replayed from any
offset. It is a synchronous generator (spool reads block), and parking a pool thread while it
waits for the next member, which can be seconds of upstream latency, would starve the default
pool with twenty callers. So each archive drives the generator in its own thread; the event loop
feeds it members as they complete and takes chunks out, granting the thread at most a few chunks
of credit so a slow reader slows the writer. A chunk crosses threads as a list of pieces (about
CHUNK_SIZE together): one hand-off per chunk, and no copy to join them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from app.core.zipformat import CHUNK_SIZE, ZIP32_LIMIT, Entry, batches

CREDITS = 4


@dataclass
class Member:
    """One file of the archive; `chunks` runs in the writer thread, `written` on the event loop.

    `chunks` is never called for a member wholly before the writer's `start` (a resume)."""

    name: str
    size: int
    crc32: int
    chunks: Callable[[], Iterator[bytes]]
    modified_at: datetime
    written: Callable[[], None] = field(default=lambda: None)
    trusted: bool = False
    """The chunks are the immutable bytes the CRC was computed over (an in-memory spool): no second pass."""


class _End:
    pass


_END = _End()


class ZipWriter:
    """One archive being written: `feed()` members, `finish()`, and iterate `chunks()`."""

    def __init__(self, chunk_size: int = CHUNK_SIZE, zip32_limit: int = ZIP32_LIMIT, start: int = 0) -> None:
        self._chunk_size = chunk_size
        self._zip32_limit = zip32_limit
        self._start = start
        self._members: queue.SimpleQueue[Member | _End] = queue.SimpleQueue()
        self._out: asyncio.Queue[list[bytes] | BaseException | _End] = asyncio.Queue()
        self._credits = threading.Semaphore(CREDITS)
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="zip-writer", daemon=True)
        self._started = False

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
                for piece in item:  # the pieces as they came (see zipformat.batches): no copy here
                    yield piece
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

    def _files(self) -> Iterator[tuple[Entry, Callable[[], Iterator[bytes]]]]:
        previous: Member | None = None
        while True:
            if previous is not None:
                self._call_soon(previous.written)
                previous = None
            item = self._members.get()
            if isinstance(item, _End) or self._stop.is_set():
                return
            previous = item
            yield Entry(item.name, item.size, item.crc32, item.modified_at, item.trusted), item.chunks

    def _run(self) -> None:
        try:
            files = self._files()
            for batch in batches(files, start=self._start, zip32_limit=self._zip32_limit, chunk_size=self._chunk_size):
                self._credits.acquire()
                if self._stop.is_set():
                    return
                self._call_soon(self._out.put_nowait, batch)
            self._call_soon(self._out.put_nowait, _END)
        except BaseException as exc:
            self._call_soon(self._out.put_nowait, exc)

    def _call_soon(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(fn, *args)
