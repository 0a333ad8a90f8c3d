"""The deterministic ZIP writer and the layout record: replay from any offset, ZIP64 switch, storage."""

from __future__ import annotations

import io
import os
import random
import time
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.archives.layout_store import DiskLayouts, LayoutStore, RedisLayouts, layout_id_of
from app.core.zip.format import Entry, ZipIntegrityError, offsets, total_size, write
from app.core.zip.layout import Layout, LayoutMember
from tests.support.zipcheck import check_zip

WHEN = datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)


def members(files: dict[str, bytes]) -> list[tuple[Entry, object]]:
    return [(Entry(n, len(d), zlib.crc32(d), WHEN), (lambda d=d: iter([d[i : i + 7000] for i in range(0, len(d), 7000)]))) for n, d in files.items()]


@pytest.mark.parametrize("zip32_limit", [0xFFFFFFFF, 50_000])
def test_any_offset_replays_the_same_bytes_without_the_earlier_members(zip32_limit: int) -> None:
    """Every suffix is what the whole archive has there, reading no member that lies before it;
    with the limit lowered, the switch to ZIP64 mid-archive (and ZIP64 end records) too."""
    rng = random.Random(7)
    files = {f"photo-{i}.jpg": rng.randbytes(rng.randrange(0, 30_000)) for i in range(6)} | {"Küche.png": b"x"}
    whole = b"".join(write(members(files), zip32_limit=zip32_limit, chunk_size=4096))  # type: ignore[arg-type]
    assert check_zip(whole) == files
    entries = [e for e, _ in members(files)]
    assert len(whole) == total_size(entries, zip32_limit)  # type: ignore[arg-type]
    where, cd_offset = offsets(entries, zip32_limit)  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert [i.header_offset for i in zf.infolist()] == where and zf.start_dir == cd_offset
        versions = [i.extract_version for i in zf.infolist()]
    if zip32_limit < len(whole):
        assert versions[0] == 20 and versions[-1] == 45  # 32-bit until the limit, ZIP64 after
    for start in sorted({*range(0, len(whole), 523), *where, cd_offset, cd_offset + 3, len(whole) - 1}):
        read: list[str] = []
        lazy = [(e, (lambda e=e, c=c, read=read: (read.append(e.name), c())[1])) for e, c in members(files)]  # type: ignore[misc]
        assert b"".join(write(lazy, start=start, zip32_limit=zip32_limit)) == whole[start:], start  # type: ignore[arg-type]
        ends = {e.name: o + len(e.name.encode()) + 30 + 9 + e.size for e, o in zip(entries, where, strict=True)}  # type: ignore[attr-defined]
        assert all(ends[name] > start for name in read)  # nothing wholly before `start` was read


def test_a_member_whose_bytes_changed_stops_the_archive() -> None:
    data = b"abc" * 1000
    bad = [(Entry("a.jpg", len(data), zlib.crc32(data) ^ 1, WHEN), lambda: iter([data]))]
    with pytest.raises(ZipIntegrityError):
        b"".join(write(bad))
    longer = [(Entry("a.jpg", 3, zlib.crc32(b"abc"), WHEN), lambda: iter([b"abcd"]))]
    with pytest.raises(ZipIntegrityError):
        b"".join(write(longer))


def test_layout_record_round_trips_and_knows_what_a_resume_needs() -> None:
    layout = Layout.new("k" * 32, "order", 1_700_000_001.7, [("i1", "a.jpg"), ("i2", "b.jpg"), ("i3", "c.jpg")], total_images=4,
                        plan_failures=[{"image_id": "i4", "name": "d.jpg", "reason": "processing", "recovery": "wait"}])
    assert layout.created_at == 1_700_000_000  # DOS time's 2-second step
    layout.members += [LayoutMember("a.jpg", 1000, 1, "i1"), LayoutMember("b.jpg", 2000, 2, "i2")]
    parsed = Layout.parse(list(layout.lines()))
    assert parsed == layout and not parsed.complete
    assert parsed.unsent() == [("i3", "c.jpg")]
    assert parsed.needed_from(0) == [0, 1] and parsed.needed_from(30 + 5 + 9 + 1000) == [1]  # header, name, 0x5455
    assert parsed.needed_from(10**6) == []
    assert Layout.parse(['{"v": 99, "layout": {}}']) is None and Layout.parse(["not json"]) is None
    assert layout_id_of(layout.etag) == layout.layout_id
    assert layout_id_of(f"W/{layout.etag}") is None and layout_id_of('"../../etc"') is None


async def test_disk_layouts_record_in_order_and_expire(tmp_path: Path) -> None:
    store = LayoutStore(DiskLayouts(tmp_path, ttl=60))
    layout = Layout.new("k" * 32, "order", time.time(), [("i1", "a.jpg")])
    recording = await store.begin(layout)
    await recording.member(LayoutMember("a.jpg", 10, 5, "i1"))
    await recording.finish([LayoutMember("_manifest.json", 2, 7, text="{}")])
    loaded = await store.load(layout.layout_id)
    assert loaded is not None and loaded.complete and [m.name for m in loaded.members] == ["a.jpg", "_manifest.json"]
    path = tmp_path / f"{layout.layout_id}.jsonl"
    assert path.stat().st_size < 1000  # small: a line per member
    old = time.time() - 120
    os.utime(path, (old, old))
    assert await store.load(layout.layout_id) is None and not path.exists()


async def test_redis_layouts_are_shared_and_expire_with_the_ttl(redis_prefix: str) -> None:
    client = aioredis.from_url("redis://127.0.0.1:6379", decode_responses=True)
    store = LayoutStore(RedisLayouts(client, redis_prefix, ttl=120))
    layout = Layout.new("k" * 32, "order", time.time(), [("i1", "a.jpg")])
    recording = await store.begin(layout)
    await recording.member(LayoutMember("a.jpg", 10, 5, "i1"))
    other = LayoutStore(RedisLayouts(aioredis.from_url("redis://127.0.0.1:6379", decode_responses=True), redis_prefix, 120))
    loaded = await other.load(layout.layout_id)  # another instance sees it
    assert loaded is not None and [m.name for m in loaded.members] == ["a.jpg"] and not loaded.complete
    assert 0 < await client.ttl(f"{redis_prefix}layout:{layout.layout_id}") <= 120
    # two resumes completing it: the first wins, the second is told to reload
    assert loaded is not None
    assert await (await other.resume(loaded)).complete([LayoutMember("_manifest.json", 2, 7, text="{}")])
    assert not await recording.complete([LayoutMember("_manifest.json", 2, 8, text="[]")])
    final = await store.load(layout.layout_id)
    assert final is not None and final.complete and final.members[-1].crc32 == 7
    await store.aclose()
    await other.aclose()


async def test_a_failing_store_stops_the_recording_instead_of_the_download(tmp_path: Path) -> None:
    store = LayoutStore(DiskLayouts(tmp_path / "layouts", ttl=60))
    layout = Layout.new("k" * 32, "order", time.time(), [("i1", "a.jpg"), ("i2", "b.jpg")])
    recording = await store.begin(layout)
    await recording.member(LayoutMember("a.jpg", 10, 5, "i1"))
    (tmp_path / "layouts" / f"{layout.layout_id}.jsonl").unlink()
    (tmp_path / "layouts").rmdir()  # the store is gone: appends now fail
    await recording.member(LayoutMember("b.jpg", 10, 6, "i2"))  # no exception: the download goes on
    await recording.finish([LayoutMember("_manifest.json", 2, 7, text="{}")])
    assert recording.broken and not recording.layout.complete
    assert [m.name for m in recording.layout.members] == ["a.jpg"]  # only what is on record


def test_trusted_members_skip_only_the_second_crc_pass() -> None:
    """In-memory spool chunks were CRC'd on arrival and cannot change: no second pass for them. Their
    size is still enforced; anything read back from disk is checked whole (test above)."""
    data = b"xyz" * 1000
    trusted = [(Entry("a.jpg", len(data), zlib.crc32(data), WHEN, trusted=True), lambda: iter([data]))]
    assert check_zip(b"".join(write(trusted))) == {"a.jpg": data}
    short = [(Entry("a.jpg", len(data) + 1, zlib.crc32(data), WHEN, trusted=True), lambda: iter([data]))]
    with pytest.raises(ZipIntegrityError):
        b"".join(write(short))
