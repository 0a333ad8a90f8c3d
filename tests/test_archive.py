"""The ZIP writer: valid for independent readers, back-pressure, abort instead of corruption."""

from __future__ import annotations

import asyncio
import random
import threading
import zlib
from datetime import UTC, datetime

import pytest
from stream_zip import CRC32IntegrityError

from app.archive import Member, ZipWriter
from tests.zipcheck import check_zip

NOW = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)


def member(name: str, data: bytes, written: threading.Event | None = None) -> Member:
    return Member(
        name,
        len(data),
        zlib.crc32(data),
        lambda: iter([data[i : i + 65536] for i in range(0, len(data), 65536)]),
        NOW,
        (written.set if written else lambda: None),
    )


async def collect(writer: ZipWriter) -> bytes:
    return b"".join([chunk async for chunk in writer.chunks()])


async def test_members_round_trip_through_three_readers() -> None:
    rng = random.Random(1)
    files = {"a.jpg": rng.randbytes(300_000), "Küche.png": rng.randbytes(10), "empty.txt": b""}
    writer = ZipWriter()
    for name, data in files.items():
        writer.feed(member(name, data))
    writer.finish()
    assert check_zip(await collect(writer)) == files


async def test_written_callback_fires_after_each_member() -> None:
    writer = ZipWriter(chunk_size=4096)
    seen = asyncio.Event()
    writer.feed(Member("x", 3, zlib.crc32(b"abc"), lambda: iter([b"abc"]), NOW, seen.set))
    writer.finish()
    await collect(writer)
    assert seen.is_set()


async def test_wrong_crc_aborts_instead_of_finishing_a_corrupt_archive() -> None:
    writer = ZipWriter()
    writer.feed(Member("bad.jpg", 3, 12345, lambda: iter([b"abc"]), NOW))
    writer.finish()
    with pytest.raises(CRC32IntegrityError):
        await collect(writer)


async def test_slow_reader_holds_the_writer_back() -> None:
    data = random.Random(2).randbytes(64 * 1024 * 1024)
    writer = ZipWriter(chunk_size=1024 * 1024)
    pulled = []

    def chunks():
        for i in range(0, len(data), 1024 * 1024):
            pulled.append(i)
            yield data[i : i + 1024 * 1024]

    writer.feed(Member("big.bin", len(data), zlib.crc32(data), chunks, NOW))
    writer.finish()
    it = writer.chunks().__aiter__()
    await it.__anext__()
    await asyncio.sleep(0.3)
    # one chunk read by us, a few in flight: the writer has not raced through 64 MiB
    assert len(pulled) <= 10
    await it.aclose()


async def test_closing_early_stops_the_writer_thread() -> None:
    writer = ZipWriter(chunk_size=4096)
    writer.feed(member("a", random.Random(3).randbytes(1_000_000)))
    # no finish(): the thread will wait for more members
    it = writer.chunks().__aiter__()
    await it.__anext__()
    await it.aclose()
    writer._thread.join(timeout=5)
    assert not writer._thread.is_alive()
