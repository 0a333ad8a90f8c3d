"""Hold one downloaded image until its ZIP member is written: in memory when small, on disk when not.

A ZIP member stored without compression needs its size and CRC-32 in the local header, so an image
must be complete before its member starts; the spool keeps it meanwhile and computes both as the
bytes arrive. Spool files live under DATA_DIR/spool and are deleted on close, whatever happens.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

READ_CHUNK = 1024 * 1024


class ImageTooLarge(Exception):
    """The image exceeded MAX_IMAGE_BYTES while downloading."""


class Spool:
    """A write-once, read-once buffer for one image, with its running size and CRC-32."""

    def __init__(self, directory: Path, memory_limit: int, max_bytes: int) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in close()
            max_size=memory_limit, dir=str(directory), prefix="img-", suffix=".part"
        )
        if memory_limit <= 0:  # SpooledTemporaryFile reads 0 as "never roll over"; we mean "disk only"
            self._file.rollover()  # type: ignore[attr-defined]
        self._max_bytes = max_bytes
        self.size = 0
        self.crc32 = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise ImageTooLarge(f"image larger than the {self._max_bytes} byte limit")
        self.crc32 = zlib.crc32(chunk, self.crc32)
        self._file.write(chunk)

    def reset(self) -> None:
        """Forget what was written (a retry starts the image again)."""
        self._file.seek(0)
        self._file.truncate()
        self.size = 0
        self.crc32 = 0

    def chunks(self) -> Iterator[bytes]:
        """Read the image back from the start (blocking reads: call from a worker thread)."""
        self._file.seek(0)
        while chunk := self._file.read(READ_CHUNK):
            yield chunk

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self._file, "_rolled", False))

    def close(self) -> None:
        self._file.close()
