"""Hold one downloaded image until its ZIP member is written: in memory when small, on disk when not.

A ZIP member stored without compression needs its size and CRC-32 in the local header, so an image
must be complete before its member starts; the spool keeps it meanwhile and computes both as the
bytes arrive. Spool files live under DATA_DIR/spool and are deleted on close, whatever happens.

In memory the spool keeps the chunks exactly as the HTTP client handed them over, with no copy
(a SpooledTemporaryFile copies every byte into a growing BytesIO, then again on the way out: a
tenth of the service's CPU at full speed). Past the memory limit it rolls over to an unnamed
temporary file (O_TMPFILE on Linux: even a crash leaves nothing behind).

Memory is also bounded per request: the spools of one batch or one resume share a `MemoryAccount`,
and a spool whose next chunk would take the account over its limit rolls over to disk instead.
Every account adds to the process's `MemoryGauge` (GET /api/stats, /metrics), so what spools hold
in memory is counted, not guessed from RSS. A spool on disk is read with positional reads, so
several readers (resumes of one layout sharing a download) can read it at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from app.core.zip.crc import crc32
from app.core.zip.format import Piece

READ_CHUNK = 1024 * 1024


class ImageTooLarge(Exception):
    """The image exceeded MAX_IMAGE_BYTES while downloading."""


class MemoryGauge:
    """Bytes every spool of the process holds in memory now, and the most it held at once."""

    def __init__(self) -> None:
        self.held = 0
        self.peak = 0

    def add(self, n: int) -> None:
        self.held += n
        self.peak = max(self.peak, self.held)


class MemoryAccount:
    """The memory one request's spools may hold together (SPOOL_REQUEST_MEMORY_BYTES); past it, disk."""

    def __init__(self, limit: int, gauge: MemoryGauge | None = None) -> None:
        self.limit = limit
        self.held = 0
        self._gauge = gauge

    def take(self, n: int) -> bool:
        """Room for `n` more bytes in memory (taken), or False: the caller goes to disk."""
        if self.held + n > self.limit:
            return False
        self.held += n
        if self._gauge is not None:
            self._gauge.add(n)
        return True

    def give(self, n: int) -> None:
        self.held -= n
        if self._gauge is not None:
            self._gauge.add(-n)


class Spool:
    """A write-once, read-once buffer for one image, with its running size and CRC-32."""

    def __init__(self, directory: Path, memory_limit: int, max_bytes: int, account: MemoryAccount | None = None) -> None:
        self._directory = directory
        self._memory_limit = memory_limit
        self._max_bytes = max_bytes
        self._account = account
        self._chunks: list[Piece] = []
        self._in_memory = 0  # bytes of `_chunks`, taken from `_account`
        self._file: IO[bytes] | None = None
        self.size = 0
        self.crc32 = 0
        if memory_limit <= 0:  # 0 means "disk only"
            self._rollover()

    def write(self, chunk: Piece) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise ImageTooLarge(f"image larger than the {self._max_bytes} byte limit (MAX_IMAGE_BYTES)")
        self.crc32 = crc32(chunk, self.crc32)
        if self._file is None and (self.size > self._memory_limit or not self._take(len(chunk))):
            self._rollover()
        if self._file is None:
            self._chunks.append(chunk)
        else:
            self._file.write(chunk)

    def _take(self, n: int) -> bool:
        if self._account is None:
            return True
        if not self._account.take(n):
            return False
        self._in_memory += n
        return True

    def _forget_memory(self) -> None:
        self._chunks.clear()
        if self._account is not None and self._in_memory:
            self._account.give(self._in_memory)
        self._in_memory = 0

    def _rollover(self) -> None:
        self._file = tempfile.TemporaryFile(dir=self._directory, prefix="img-", suffix=".part")  # noqa: SIM115
        for chunk in self._chunks:
            self._file.write(chunk)
        self._forget_memory()

    @property
    def max_bytes(self) -> int:
        """MAX_IMAGE_BYTES: the upstream client refuses a larger Content-Length before reading."""
        return self._max_bytes

    def reset(self) -> None:
        """Forget what was written (a retry starts the image again)."""
        self._forget_memory()
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        self.size = 0
        self.crc32 = 0

    def chunks(self) -> Iterator[Piece]:
        """Read the image back from the start (blocking reads: call from a worker thread).

        Positional reads, no shared file position: readers of one spool do not disturb each other."""
        if self._file is None:
            yield from self._chunks
            return
        self._file.flush()
        fd, offset = self._file.fileno(), 0
        while chunk := os.pread(fd, READ_CHUNK, offset):
            offset += len(chunk)
            yield chunk

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    @property
    def in_memory(self) -> int:
        """Bytes this spool holds in memory (0 once on disk or closed)."""
        return sum(map(len, self._chunks))

    def close(self) -> None:
        self._forget_memory()
        if self._file is not None:
            self._file.close()


class Keep(Protocol):
    """Where a batch saves each file it downloads, and finds it again on a rerun."""

    def load(self, key: str, spool: Spool) -> bool:
        """Fill `spool` with the saved file for `key`; False (spool untouched) when there is none."""

    def save(self, key: str, spool: Spool) -> None:
        """Save the downloaded file for `key` (blocking: called in a worker thread)."""
