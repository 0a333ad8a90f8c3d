"""Deterministic fake image bytes of any size, generated on demand and never held whole.

Benchmarks pull thousands of multi-megabyte images through the simulator, so this path must cost
almost nothing: one 1 MiB pseudo-random block is built once per process, and an image's bytes are
a 32-byte SHA-256 header of its id followed by that block read from an id-dependent rotation. The
header makes every image distinct; the rotation makes bulk content differ too. The bytes are not a
decodable image: they are served as-is whatever format a client asks for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import cache

BLOCK_SIZE = 1 << 20
"""Size of the shared pseudo-random block (1 MiB)."""

CHUNK_SIZE = 256 * 1024
"""Chunk size used when streaming synthetic bytes."""

_SEED = 0x5EED_A07E


@cache
def _doubled_block() -> bytes:
    """The block twice over, so any window up to BLOCK_SIZE long is a single slice (no wrap)."""
    block = random.Random(_SEED).randbytes(BLOCK_SIZE)
    return block + block


def _header(image_id: str) -> bytes:
    return hashlib.sha256(image_id.encode("utf-8")).digest()


def _rotation(image_id: str) -> int:
    return int.from_bytes(hashlib.sha256(b"rotation:" + image_id.encode("utf-8")).digest()[:8], "big") % BLOCK_SIZE


def iter_chunks(image_id: str, size: int, *, start: int = 0, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield bytes [start, size) of the image in chunks of at most `chunk_size` (<= BLOCK_SIZE)."""
    if size < 0 or start < 0:
        raise ValueError("size and start must be >= 0")
    chunk_size = max(1, min(chunk_size, BLOCK_SIZE))
    header = _header(image_id)
    pos = start
    if pos < len(header) and pos < size:
        end = min(len(header), size)
        yield header[pos:end]
        pos = end
    doubled = _doubled_block()
    rotation = _rotation(image_id)
    while pos < size:
        n = min(chunk_size, size - pos)
        offset = (rotation + pos - len(header)) % BLOCK_SIZE
        yield doubled[offset : offset + n]
        pos += n


def synthetic_bytes(image_id: str, size: int) -> bytes:
    """All bytes of a synthetic image at once (for tests and small images)."""
    return b"".join(iter_chunks(image_id, size, chunk_size=BLOCK_SIZE))
