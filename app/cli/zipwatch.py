"""Count the members of a ZIP as its bytes stream past, without buffering it.

Why: the streamed archive's headers say how many images the order has (`X-Total-Images`) but not
how many have arrived; the service writes each image as one stored member the moment it completes,
so the member headers going by *are* the progress. Our members are stored with their sizes in the
local header (no data descriptors), so each member's data can be skipped exactly. For anything
else (a data descriptor, an unknown signature) counting stops quietly: progress is a nicety, the
bytes are still written untouched.
"""

from __future__ import annotations

import struct

LOCAL_HEADER = b"PK\x03\x04"
CENTRAL_HEADER = b"PK\x01\x02"
_FIXED = struct.Struct("<4sHHHHHIIIHH")  # the 30-byte local file header
_ZIP64_EXTRA = 0x0001
SERVICE_FILES = frozenset({"_download_report.txt", "_manifest.json"})


class ZipMemberCounter:
    """Feed it chunks; `names` grows as each member's local header goes past."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.finished = False  # reached the central directory
        self.lost = False  # met something it cannot follow; counting stopped
        self._buffer = bytearray()
        self._skip = 0

    @property
    def images(self) -> int:
        """Members that are images (not the report or the manifest)."""
        return sum(1 for name in self.names if name not in SERVICE_FILES)

    def feed(self, chunk: bytes) -> None:
        if self.finished or self.lost:
            return
        view = memoryview(chunk)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            self._buffer += view  # only header bytes stay buffered: data is skipped in _parse_headers
            view = memoryview(b"")
            self._parse_headers()

    def _parse_headers(self) -> None:
        while not self._skip:
            if len(self._buffer) < 4:
                return
            signature = bytes(self._buffer[:4])
            if signature == CENTRAL_HEADER:
                self.finished = True
                return
            if signature != LOCAL_HEADER:
                self.lost = True
                return
            if len(self._buffer) < _FIXED.size:
                return
            fields = _FIXED.unpack_from(self._buffer)
            flags, compressed, name_length, extra_length = fields[2], fields[7], fields[9], fields[10]
            end = _FIXED.size + name_length + extra_length
            if len(self._buffer) < end:
                return
            if flags & 0x0008:  # sizes follow the data: cannot skip exactly
                self.lost = True
                return
            name = bytes(self._buffer[_FIXED.size : _FIXED.size + name_length]).decode("utf-8", "replace")
            if compressed == 0xFFFFFFFF:
                compressed = zip64_size(bytes(self._buffer[_FIXED.size + name_length : end]))
                if compressed is None:
                    self.lost = True
                    return
            self.names.append(name)
            del self._buffer[:end]
            self._skip = compressed
            if self._buffer:  # data already buffered: consume it against the skip
                step = min(self._skip, len(self._buffer))
                del self._buffer[:step]
                self._skip -= step


def zip64_size(extra: bytes) -> int | None:
    """The compressed size from a local header's ZIP64 extra field (uncompressed size comes first)."""
    offset = 0
    while offset + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, offset)
        if tag == _ZIP64_EXTRA and size >= 16:
            return int(struct.unpack_from("<Q", extra, offset + 12)[0])
        offset += 4 + size
    return None
