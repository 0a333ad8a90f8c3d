"""Hold one downloaded image until its ZIP member is written: in memory when small, on disk when not.

A ZIP member stored without compression needs its size and CRC-32 in the local header, so an image
must be complete before its member starts; the spool keeps it meanwhile and computes both as the
bytes arrive. Spool files live under DATA_DIR/spool and are deleted on close, whatever happens.

In memory the spool keeps the chunks exactly as the HTTP client handed them over, with no copy
(a SpooledTemporaryFile copies every byte into a growing BytesIO, then again on the way out: a
tenth of the service's CPU at full speed). Past the memory limit it rolls over to an unnamed
temporary file (O_TMPFILE on Linux: even a crash leaves nothing behind).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from app.core.checksum import crc32

READ_CHUNK = 1024 * 1024


class ImageTooLarge(Exception):
    """The image exceeded MAX_IMAGE_BYTES while downloading."""


class Spool:
    """A write-once, read-once buffer for one image, with its running size and CRC-32."""

    def __init__(self, directory: Path, memory_limit: int, max_bytes: int) -> None:
        self._directory = directory
        self._memory_limit = memory_limit
        self._max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._file: IO[bytes] | None = None
        self.size = 0
        self.crc32 = 0
        if memory_limit <= 0:  # 0 means "disk only"
            self._rollover()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise ImageTooLarge(f"image larger than the {self._max_bytes} byte limit (MAX_IMAGE_BYTES)")
        self.crc32 = crc32(chunk, self.crc32)
        if self._file is None and self.size > self._memory_limit:
            self._rollover()
        if self._file is None:
            self._chunks.append(chunk)
        else:
            self._file.write(chunk)

    def _rollover(self) -> None:
        self._file = tempfile.TemporaryFile(dir=self._directory, prefix="img-", suffix=".part")  # noqa: SIM115
        for chunk in self._chunks:
            self._file.write(chunk)
        self._chunks.clear()

    @property
    def max_bytes(self) -> int:
        """MAX_IMAGE_BYTES: the upstream client refuses a larger Content-Length before reading."""
        return self._max_bytes

    def reset(self) -> None:
        """Forget what was written (a retry starts the image again)."""
        self._chunks.clear()
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
        self.size = 0
        self.crc32 = 0

    def chunks(self) -> Iterator[bytes]:
        """Read the image back from the start (blocking reads: call from a worker thread)."""
        if self._file is None:
            yield from self._chunks
            return
        self._file.seek(0)
        while chunk := self._file.read(READ_CHUNK):
            yield chunk

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        self._chunks.clear()
        if self._file is not None:
            self._file.close()
