"""The ZIP writer: valid for independent readers, back-pressure, abort instead of corruption."""

from __future__ import annotations

import asyncio
import random
import threading
import zlib
from datetime import UTC, datetime

import pytest

from app.core.zip.format import ZipIntegrityError
from app.core.zip.layout import LayoutMember
from app.core.zip.writer import Member, ZipWriter
from tests.support.zipcheck import check_zip

NOW = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)


def member(name: str, data: bytes, written: threading.Event | None = None) -> Member:
    return Member(
        LayoutMember(name, len(data), zlib.crc32(data)),
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
    writer.feed(Member(LayoutMember("x", 3, zlib.crc32(b"abc")), lambda: iter([b"abc"]), NOW, seen.set))
    writer.finish()
    await collect(writer)
    assert seen.is_set()


async def test_wrong_crc_aborts_instead_of_finishing_a_corrupt_archive() -> None:
    writer = ZipWriter()
    writer.feed(Member(LayoutMember("bad.jpg", 3, 12345), lambda: iter([b"abc"]), NOW))
    writer.finish()
    with pytest.raises(ZipIntegrityError):
        await collect(writer)


async def test_slow_reader_holds_the_writer_back() -> None:
    data = random.Random(2).randbytes(64 * 1024 * 1024)
    writer = ZipWriter(chunk_size=1024 * 1024)
    pulled = []

    def chunks():
        for i in range(0, len(data), 1024 * 1024):
            pulled.append(i)
            yield data[i : i + 1024 * 1024]

    writer.feed(Member(LayoutMember("big.bin", len(data), zlib.crc32(data)), chunks, NOW))
    writer.finish()
    it = writer.chunks().__aiter__()
    await it.__anext__()
    await asyncio.sleep(0.3)
    # one chunk read by us, at most one more made: the writer has not raced through 64 MiB
    assert len(pulled) <= 2
    await it.aclose()


@pytest.mark.parametrize("in_memory", [True, False])
async def test_closing_early_stops_reading_the_member(in_memory: bool) -> None:
    writer = ZipWriter(chunk_size=4096)
    closed = threading.Event()
    data = random.Random(3).randbytes(1_000_000)

    def chunks():
        try:
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]
        finally:
            closed.set()

    writer.feed(Member(LayoutMember("a", len(data), zlib.crc32(data)), chunks, NOW, in_memory=in_memory))
    # no finish(): the writer would wait for more members
    it = writer.chunks().__aiter__()
    await it.__anext__()
    await it.aclose()
    assert await asyncio.to_thread(closed.wait, 5)


async def test_members_on_disk_are_read_off_the_event_loop_and_in_memory_ones_on_it() -> None:
    loop_thread = threading.get_ident()
    readers: dict[str, int] = {}

    def chunks(name: str, data: bytes):
        def read():
            readers[name] = threading.get_ident()
            yield data

        return read

    writer = ZipWriter()
    writer.feed(Member(LayoutMember("disk.jpg", 3, zlib.crc32(b"abc")), chunks("disk.jpg", b"abc"), NOW))
    memory = LayoutMember("memory.jpg", 3, zlib.crc32(b"def"))
    writer.feed(Member(memory, chunks("memory.jpg", b"def"), NOW, in_memory=True))
    writer.finish()
    assert check_zip(await collect(writer)) == {"disk.jpg": b"abc", "memory.jpg": b"def"}
    assert readers["disk.jpg"] != loop_thread
    assert readers["memory.jpg"] == loop_thread


async def test_a_member_in_memory_failing_its_crc_aborts_too() -> None:
    writer = ZipWriter()
    writer.feed(Member(LayoutMember("bad.jpg", 3, 12345), lambda: iter([b"abc"]), NOW, in_memory=True))
    writer.finish()
    with pytest.raises(ZipIntegrityError):
        await collect(writer)


async def test_members_past_the_zip32_limit_become_zip64_and_stay_readable() -> None:
    """The same switch a > 4 GiB archive makes, with the limit lowered to 1 MB so it runs fast.

    The first members stay 32-bit (some unzippers mishandle ZIP64 needlessly); once offsets would
    pass the limit, members are ZIP64. All three readers must accept the mixed archive.
    """
    import io
    import zipfile

    rng = random.Random(4)
    files = {f"photo-{i}.jpg": rng.randbytes(300_000) for i in range(8)}
    writer = ZipWriter(zip32_limit=1_000_000)
    for name, data in files.items():
        writer.feed(member(name, data))
    writer.finish()
    archive = await collect(writer)
    assert check_zip(archive) == files
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        infos = zf.infolist()
    zip64 = [0x0001 in extra_ids(info.extra) for info in infos]
    assert zip64[:3] == [False, False, False]  # the first members stay 32-bit
    assert zip64[-3:] == [True, True, True]  # those past the limit are ZIP64
    assert infos[0].extract_version < 45 <= infos[-1].extract_version


def extra_ids(extra: bytes) -> set[int]:
    """The header ids of a ZIP extra field's records (0x0001 is ZIP64)."""
    import struct

    ids, offset = set(), 0
    while offset + 4 <= len(extra):
        header_id, size = struct.unpack_from("<HH", extra, offset)
        ids.add(header_id)
        offset += 4 + size
    return ids
