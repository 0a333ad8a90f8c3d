"""Streaming ZIP output: members in, bytes out, with back-pressure and no recompression.

app/core/zip/format.py writes the format (ZIP64 where needed, UTF-8 names, CRC and size checked
against what we declared), deterministically, so a resumed download can be replayed from any
offset. Here its encoder is driven member by member, pulled by the reader:

- a member held in memory (nearly every image: the spool keeps what the HTTP client handed over)
  is written on the event loop, since nothing in it blocks: handing it to a writer thread would
  make the two threads trade the interpreter lock, which costs more CPU than the writing itself
  (docs/decisions/own-zip-writer.md);
- a member on disk is read in a worker thread, one chunk (about CHUNK_SIZE) per trip, so a slow
  disk never stalls the loop and no thread is parked while the next member is awaited.

Nothing runs ahead of the reader: the next chunk is made when the last one has been taken, so a
slow reader slows the writer instead of filling memory; through `written` the batch learns what the
reader took, and its downloads wait once SPOOL_AHEAD_BYTES wait for it (app/core/engine.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.core.zip.format import CHUNK_SIZE, ZIP32_LIMIT, Encoder, Piece
from app.core.zip.layout import LayoutMember


@dataclass
class Member:
    """One file of the archive: what it is (`info`) and where its bytes come from, with a `written`
    callback once its last byte has been taken.

    `chunks` is never called for a member wholly before the writer's `start` (a resume)."""

    info: LayoutMember
    chunks: Callable[[], Iterator[Piece]]
    modified_at: datetime
    written: Callable[[], None] = field(default=lambda: None)
    trusted: bool = False
    """The chunks are the immutable bytes the CRC was computed over (an in-memory spool): no second pass."""
    in_memory: bool = False
    """`chunks` never blocks (bytes already in memory): written on the event loop, not in a worker thread."""


class ArchiveFeedFailed(Exception):
    """What feeds the writer failed (its cause is chained): the archive ends unfinished, never silently."""


class _End:
    pass


_END = _End()


@dataclass
class _Failed:
    """What went wrong feeding the writer: raised to its reader instead of waiting for a member."""

    error: BaseException


class ZipWriter:
    """One archive being written: `feed()` members, `finish()`, and iterate `chunks()`."""

    def __init__(
        self,
        chunk_size: int = CHUNK_SIZE,
        zip32_limit: int = ZIP32_LIMIT,
        start: int = 0,
        ranks: Mapping[str, int] | None = None,
    ) -> None:
        """`ranks`: each planned name's place in the central directory (zipformat.listing_ranks)."""
        self._encoder = Encoder(start=start, zip32_limit=zip32_limit, chunk_size=chunk_size, ranks=ranks)
        self._members: asyncio.Queue[Member | _End | _Failed] = asyncio.Queue()

    def feed(self, member: Member) -> None:
        self._members.put_nowait(member)

    def finish(self) -> None:
        self._members.put_nowait(_END)

    def fail(self, error: BaseException) -> None:
        """No more members will come: the reader gets `error` (a cancelled feeder: CancelledError)."""
        self._members.put_nowait(_Failed(error))

    async def chunks(self) -> AsyncIterator[Piece]:
        """The archive's bytes, as the pieces the encoder produced (no copy to join them)."""
        async for batch in self.batches():
            for piece in batch:
                yield piece

    async def batches(self) -> AsyncIterator[list[Piece]]:
        """The archive's bytes as lists of pieces of about `chunk_size` together."""
        encoder = self._encoder
        while not isinstance(member := await self._members.get(), _End):
            if isinstance(member, _Failed):
                raise ArchiveFeedFailed("the archive could not be completed") from member.error
            entry = member.info.entry(member.modified_at, member.trusted)
            pieces = encoder.member(entry, member.chunks)
            if member.in_memory:
                for batch in pieces:
                    yield batch
            else:
                async for batch in _in_worker_thread(pieces):
                    yield batch
            member.written()
        for batch in encoder.end():
            yield batch


async def _in_worker_thread(pieces: Generator[list[Piece], None, None]) -> AsyncIterator[list[Piece]]:
    """Each step of `pieces` (blocking disk reads) in a worker thread; closed once no step is running."""
    loop = asyncio.get_running_loop()
    step: asyncio.Future[list[Piece] | None] | None = None
    try:
        while (batch := await asyncio.shield(step := loop.run_in_executor(None, next, pieces, None))) is not None:
            yield batch
    finally:
        if step is not None and not step.done():  # cancelled mid-step: a thread cannot be interrupted
            step.add_done_callback(lambda _: pieces.close())
        else:
            pieces.close()
