"""The ZIP bytes of stored members, as a pure function of the layout: names, sizes, CRCs, one time.

Why our own writer rather than stream-zip: resuming a streamed archive at byte N means producing
exactly the bytes an earlier response would have sent from N, without the data of the members
before N (they are not fetched again). stream-zip can only write an archive from its first member
and checks every member's data against its CRC, so it cannot skip one. Here every header is a
function of (entry, offset), so the offsets are plain arithmetic and the same generator writes
the live stream and any replay of it: byte identity by construction, not by coincidence.

Format choices (APPNOTE 6.3.10): members are stored (method 0) with size and CRC-32 in the local
header, so there are no data descriptors; the UTF-8 flag is always set; every member carries the
layout's modification time twice: as DOS time (UTC: DOS time has no zone, and UTC keeps the bytes
independent of the server's zone) and as the Info-ZIP extended timestamp (0x5455, Unix seconds), which
unzip, bsdtar and 7-Zip prefer and show in the reader's own zone; and mode 0644. The central
directory lists members in the photographer's order (`listing_ranks`), whatever order they were
streamed in (they stream as they complete). A member stays 32-bit until its end
would pass `zip32_limit` (4 GiB - 1 by default: Safari and Archive Utility mishandle needless
ZIP64); from there on members are ZIP64 (sizes and offset in the 0x0001 extra field), and the end
records are ZIP64 when the central directory lies past the limit or holds 65535+ entries.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.core.zip.crc import crc32

ZIP32_LIMIT = 0xFFFFFFFF
CHUNK_SIZE = 1024 * 1024
_UTF8 = 0x0800
_MADE_BY_UNIX = 3 << 8
_EXTERNAL = (stat.S_IFREG | 0o644) << 16
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_END64 = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")  # 20 bytes


class ZipIntegrityError(Exception):
    """A member's data did not match its declared size or CRC-32: the archive must not be finished."""


@dataclass(frozen=True)
class Entry:
    """One member as the layout knows it."""

    name: str
    size: int
    crc32: int
    modified: datetime
    trusted: bool = field(default=False, compare=False)
    """Its data cannot have changed since its CRC was computed (immutable in-memory chunks): `write`
    counts its size but skips a second CRC pass. Data read back from disk is always checked."""

    @property
    def encoded_name(self) -> bytes:
        return self.name.encode("utf-8")


def dos_time(modified: datetime) -> tuple[int, int]:
    """(time, date) fields; DOS time cannot say before 1980, and has 2-second steps."""
    t = modified.astimezone(UTC)
    if t.year < 1980:
        t = datetime(1980, 1, 1, tzinfo=UTC)
    return (t.hour << 11) | (t.minute << 5) | (t.second // 2), ((t.year - 1980) << 9) | (t.month << 5) | t.day


_EXTENDED_TIME = struct.Struct("<HHBI")  # 9 bytes: tag 0x5455, size 5, flags (bit 0: mtime), mtime


def extended_time(modified: datetime) -> bytes:
    """The Info-ZIP extended timestamp extra field (same bytes in the local and central headers:
    both carry only the modification time). Unix seconds, clamped to what 32 bits say."""
    seconds = min(max(int(modified.timestamp()), 0), 0x7FFFFFFF)
    return _EXTENDED_TIME.pack(0x5455, 5, 1, seconds)


def listing_ranks(names: Iterable[str]) -> dict[str, int]:
    """Each planned member name's place in the central directory: set (its folder, in the order the
    sets first appear), then the photo's place in the plan. Names not ranked here (the report, the
    manifest) are listed after, in the order they were written."""
    listed = list(dict.fromkeys(names))
    folders = list(dict.fromkeys(name.rpartition("/")[0] for name in listed))
    by_folder = {folder: index for index, folder in enumerate(folders)}
    ordered = sorted(range(len(listed)), key=lambda i: (by_folder[listed[i].rpartition("/")[0]], i))
    return {listed[i]: rank for rank, i in enumerate(ordered)}


def is_zip64(entry: Entry, offset: int, zip32_limit: int = ZIP32_LIMIT) -> bool:
    """Whether the member at `offset` needs ZIP64 (its end would pass the limit, or it is that big)."""
    end = offset + _LOCAL.size + len(entry.encoded_name) + entry.size
    return end > zip32_limit or entry.size >= ZIP32_LIMIT


def local_header(entry: Entry, offset: int, zip32_limit: int = ZIP32_LIMIT) -> bytes:
    name = entry.encoded_name
    time_, date = dos_time(entry.modified)
    stamp = extended_time(entry.modified)
    if is_zip64(entry, offset, zip32_limit):
        extra = struct.pack("<HHQQ", 0x0001, 16, entry.size, entry.size) + stamp
        fields = (0x04034B50, 45, _UTF8, 0, time_, date, entry.crc32, ZIP32_LIMIT, ZIP32_LIMIT, len(name), len(extra))
        return _LOCAL.pack(*fields) + name + extra
    fields = (0x04034B50, 20, _UTF8, 0, time_, date, entry.crc32, entry.size, entry.size, len(name), len(stamp))
    return _LOCAL.pack(*fields) + name + stamp


def header_size(entry: Entry, offset: int, zip32_limit: int = ZIP32_LIMIT) -> int:
    return _LOCAL.size + len(entry.encoded_name) + _EXTENDED_TIME.size + (20 if is_zip64(entry, offset, zip32_limit) else 0)


def central_directory(entries: Iterable[tuple[Entry, int]], cd_offset: int, zip32_limit: int = ZIP32_LIMIT) -> bytes:
    """The central directory and end records for members at the given offsets."""
    parts: list[bytes] = []
    count = 0
    for entry, offset in entries:
        count += 1
        name = entry.encoded_name
        time_, date = dos_time(entry.modified)
        if is_zip64(entry, offset, zip32_limit):
            extra = struct.pack("<HHQQQ", 0x0001, 24, entry.size, entry.size, offset)
            sizes, where, version = (ZIP32_LIMIT, ZIP32_LIMIT), ZIP32_LIMIT, 45
        else:
            extra, sizes, where, version = b"", (entry.size, entry.size), offset, 20
        extra += extended_time(entry.modified)
        parts.append(
            _CENTRAL.pack(
                0x02014B50, _MADE_BY_UNIX | version, version, _UTF8, 0, time_, date, entry.crc32, *sizes,
                len(name), len(extra), 0, 0, 0, _EXTERNAL, where,
            )
            + name
            + extra
        )
    cd_size = sum(len(p) for p in parts)
    end64 = cd_offset + cd_size > zip32_limit or count >= 0xFFFF
    if end64:
        end64_offset = cd_offset + cd_size
        parts.append(_END64.pack(0x06064B50, 44, _MADE_BY_UNIX | 45, 45, 0, 0, count, count, cd_size, cd_offset))
        parts.append(_LOCATOR64.pack(0x07064B50, 0, end64_offset, 1))
        parts.append(_END.pack(0x06054B50, 0, 0, 0xFFFF, 0xFFFF, ZIP32_LIMIT, ZIP32_LIMIT, 0))
    else:
        parts.append(_END.pack(0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0))
    return b"".join(parts)


def offsets(entries: list[Entry], zip32_limit: int = ZIP32_LIMIT) -> tuple[list[int], int]:
    """Each member's local header offset, and the central directory's."""
    where: list[int] = []
    offset = 0
    for entry in entries:
        where.append(offset)
        offset += header_size(entry, offset, zip32_limit) + entry.size
    return where, offset


def total_size(entries: list[Entry], zip32_limit: int = ZIP32_LIMIT) -> int:
    """The archive's length in bytes, known as soon as the layout is."""
    where, cd_offset = offsets(entries, zip32_limit)
    return cd_offset + len(central_directory(zip(entries, where, strict=True), cd_offset, zip32_limit))


Piece = bytes | memoryview
"""A run of a file's bytes as received: bytes, or a read-only view of a block the HTTP client filled
(app/core/upstream/http1.py), passed on as it is, never copied to bytes."""

Chunks = Callable[[], Iterator[Piece]]

SMALL_PIECE = 64 * 1024
"""Pieces under this are joined with their small neighbours; larger ones are handed on as they are."""


def write(
    members: Iterable[tuple[Entry, Chunks | None]],
    *,
    start: int = 0,
    zip32_limit: int = ZIP32_LIMIT,
    chunk_size: int = CHUNK_SIZE,
    ranks: Mapping[str, int] | None = None,
) -> Iterator[Piece]:
    """The archive's bytes from offset `start`, in chunks of about `chunk_size` (see `batches`)."""
    for batch in batches(members, start=start, zip32_limit=zip32_limit, chunk_size=chunk_size, ranks=ranks):
        yield batch[0] if len(batch) == 1 else b"".join(batch)


def batches(
    members: Iterable[tuple[Entry, Chunks | None]],
    *,
    start: int = 0,
    zip32_limit: int = ZIP32_LIMIT,
    chunk_size: int = CHUNK_SIZE,
    ranks: Mapping[str, int] | None = None,
) -> Iterator[list[Piece]]:
    """The archive's bytes from offset `start`, as lists of pieces totalling about `chunk_size`.

    `members` may arrive lazily (a live stream); see `Encoder` for what each member's bytes are.
    """
    encoder = Encoder(start=start, zip32_limit=zip32_limit, chunk_size=chunk_size, ranks=ranks)
    for entry, chunks in members:
        yield from encoder.member(entry, chunks)
    yield from encoder.end()


class Encoder:
    """The archive member by member: `member()` for each file in order, then `end()`.

    Incremental so that whoever drives it chooses where each member is written: the event loop for
    data already in memory, a worker thread for data read from disk (app/core/zip/writer.py).

    Pieces come out in lists totalling about `chunk_size`. Why lists: image data arrives as the
    HTTP client's pieces (128-256 KiB at full speed); joining them into bigger chunks copied every
    byte once more (and allocated a fresh buffer per chunk). A piece of at least SMALL_PIECE is
    passed on as it is; only runs of small ones (headers, tiny members, the central directory) are
    joined. Every member ends with a flush: the next one may be seconds away.

    A member whose header and data all lie before `start` is skipped without calling its chunks
    (None is allowed there); any other member's data is read whole and checked against its size and
    CRC-32 (ZipIntegrityError, after which the caller must abort: the archive is never finished
    around bad data).
    """

    def __init__(
        self,
        *,
        start: int = 0,
        zip32_limit: int = ZIP32_LIMIT,
        chunk_size: int = CHUNK_SIZE,
        ranks: Mapping[str, int] | None = None,
    ) -> None:
        self._start = start
        self._ranks = ranks or {}
        self._zip32_limit = zip32_limit
        self._chunk_size = chunk_size
        self._offset = 0
        self._written: list[tuple[Entry, int]] = []
        self._pending: list[Piece] = []
        self._small: list[Piece] = []  # consecutive small pieces, joined into one before the next large one
        self._pending_size = 0

    def member(self, entry: Entry, chunks: Chunks | None) -> Generator[list[Piece], None, None]:
        offset = self._offset
        self._written.append((entry, offset))
        header = local_header(entry, offset, self._zip32_limit)
        end = offset + len(header) + entry.size
        if end <= self._start:
            self._offset = end
            return
        yield from self._emit(header, offset)
        offset += len(header)
        self._offset = end
        if chunks is None:
            if entry.size:
                raise ZipIntegrityError(f"{entry.name}: no data to write from offset {self._start}")
            return
        size, crc = 0, 0
        check = not entry.trusted
        for chunk in chunks():
            size += len(chunk)
            if size > entry.size:
                raise ZipIntegrityError(f"{entry.name}: more than the declared {entry.size} bytes")
            if check:
                crc = crc32(chunk, crc)
            yield from self._emit(chunk, offset)
            offset += len(chunk)
        if size != entry.size or (check and crc != entry.crc32):
            raise ZipIntegrityError(f"{entry.name}: {size} bytes with CRC {crc:08x}, declared {entry.size}/{entry.crc32:08x}")
        yield from self._flush()

    def end(self) -> Iterator[list[Piece]]:
        """The central directory (in `ranks` order, the rest as written) and end records."""
        unranked = len(self._ranks)
        listed = sorted(
            enumerate(self._written), key=lambda item: (self._ranks.get(item[1][0].name, unranked), item[0])
        )
        directory = central_directory([written for _, written in listed], self._offset, self._zip32_limit)
        yield from self._emit(directory, self._offset)
        yield from self._flush()

    def _emit(self, data: Piece, at: int) -> Iterator[list[Piece]]:
        if at + len(data) <= self._start:
            return
        if at < self._start:
            data = data[self._start - at :]
        if len(data) < SMALL_PIECE:
            self._small.append(data)
        else:
            if self._small:
                self._pending.append(b"".join(self._small))
                self._small.clear()
            self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self._chunk_size:
            yield from self._flush()

    def _flush(self) -> Iterator[list[Piece]]:
        small = self._small
        if small:
            self._pending.append(small[0] if len(small) == 1 else b"".join(small))
            small.clear()
        if self._pending:
            yield self._pending
            self._pending = []
            self._pending_size = 0
