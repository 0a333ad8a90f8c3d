"""The CLI's own files beside the output (`<out>.part`, `<out>.part.json`): made safely, checked before reuse.

- Never through a link: a `<out>.part` that is a symbolic link (say, to a file the user cares
  about) is refused, and the files are opened with O_NOFOLLOW, so nothing is written through one.
- Verified before a resume: the kept bytes are the head of a ZIP whose members are stored with
  their CRC-32 in the local header (app/core/zip/format.py). Each complete member is checked
  before asking for the rest; the first damaged one and everything after it is dropped, and the
  service sends from there. A finished file is checked once more (`damaged_member`).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import IO

from app.cli.zipwatch import zip64_size
from app.core.zip.crc import crc32

LOCAL_HEADER = b"PK\x03\x04"
_FIXED = struct.Struct("<4sHHHHHIIIHH")  # the 30-byte local file header
READ_CHUNK = 1024 * 1024


def link_in_the_way(*paths: Path) -> Path | None:
    """The first of `paths` that is a symbolic link (the command never writes through one)."""
    return next((path for path in paths if path.is_symlink()), None)


def open_own(path: Path, mode: str) -> IO[bytes]:
    """`path` opened for writing ("wb" or "ab") without following a link at its name."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if mode == "ab" else os.O_TRUNC
    return os.fdopen(os.open(path, flags, 0o644), mode)


def write_own_text(path: Path, text: str) -> None:
    with open_own(path, "wb") as file:
        file.write(text.encode())


def intact_length(path: Path) -> tuple[int, bool]:
    """(bytes of `path` worth resuming from, whether a damaged member was found).

    Walks the local headers: each complete stored member's data must match its CRC-32. An unfinished
    last member is kept (the rest of it is asked for); the first damaged or unreadable member ends
    what is kept. Stops at the central directory, or at anything that is not a local header.
    """
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as file:
        while offset + _FIXED.size <= size:
            file.seek(offset)
            fields = _FIXED.unpack(file.read(_FIXED.size))
            if fields[0] != LOCAL_HEADER:
                return offset, fields[0][:2] != b"PK"  # the central directory (or ours ends): not damage
            flags, method, crc, compressed, name_length, extra_length = (
                fields[2], fields[3], fields[6], fields[7], fields[9], fields[10]
            )
            start = offset + _FIXED.size + name_length + extra_length
            if start > size:
                return offset, False  # the header itself is unfinished
            if compressed == 0xFFFFFFFF:
                file.seek(offset + _FIXED.size + name_length)
                compressed = zip64_size(file.read(extra_length))
            if flags & 0x0008 or method != 0 or compressed is None:
                return offset, True  # not a member this service writes: nothing after it can be trusted
            end = start + compressed
            if end > size:
                return size, False  # unfinished: its rest is asked for, and the finished file checked
            if _crc_of(file, start, compressed) != crc:
                return offset, True
            offset = end
    return offset, False


def _crc_of(file: IO[bytes], start: int, length: int) -> int:
    file.seek(start)
    crc = 0
    while length:
        chunk = file.read(min(READ_CHUNK, length))
        if not chunk:
            return -1
        crc = crc32(chunk, crc)
        length -= len(chunk)
    return crc


def damaged_member(path: Path) -> str | None:
    """The first member of a finished ZIP whose bytes fail their CRC, or a word on why it is no ZIP."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"(not a readable ZIP: {exc})"
