"""The spool: memory up to its limit, an unnamed file past it, size and CRC-32 as bytes arrive."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from app.core.spool import ImageTooLarge, MemoryAccount, MemoryGauge, Spool


def open_files_under(directory: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory))
        except OSError:
            continue
    return count


def test_small_image_stays_in_memory_and_reads_back_unchanged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=1000, max_bytes=10_000)
    parts = [b"a" * 300, b"b" * 300, b"c" * 300]
    for part in parts:
        spool.write(part)
    assert not spool.on_disk
    assert open_files_under(tmp_path) == 0
    assert b"".join(spool.chunks()) == b"".join(parts)
    assert (spool.size, spool.crc32) == (900, zlib.crc32(b"".join(parts)))


def test_rolls_over_to_an_unnamed_file_past_the_memory_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=500, max_bytes=10_000)
    data = os.urandom(1200)
    for i in range(0, 1200, 400):
        spool.write(data[i : i + 400])
    assert spool.on_disk
    assert open_files_under(tmp_path) == 1
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing to clean up after a crash
    assert b"".join(spool.chunks()) == data
    assert spool.crc32 == zlib.crc32(data)
    spool.close()
    assert open_files_under(tmp_path) == 0


def test_zero_memory_limit_means_disk_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=0, max_bytes=10_000)
    spool.write(b"x")
    assert spool.on_disk
    assert b"".join(spool.chunks()) == b"x"
    spool.close()


@pytest.mark.parametrize("memory_limit", [0, 100, 10_000])
def test_reset_forgets_a_failed_attempt(tmp_path: Path, memory_limit: int) -> None:
    spool = Spool(tmp_path, memory_limit=memory_limit, max_bytes=10_000)
    spool.write(b"partial body" * 20)
    spool.reset()
    spool.write(b"retry")
    assert (b"".join(spool.chunks()), spool.size, spool.crc32) == (b"retry", 5, zlib.crc32(b"retry"))
    spool.close()


def test_refuses_an_image_over_the_size_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=100, max_bytes=1000)
    spool.write(b"x" * 1000)
    with pytest.raises(ImageTooLarge, match="1000 byte limit"):
        spool.write(b"x")
    spool.close()


@pytest.mark.parametrize("memory_limit", [10_000_000, 0])
def test_crc_matches_zlib_for_pieces_of_every_size(tmp_path: Path, memory_limit: int) -> None:
    """The CRC comes from ISA-L (app/core/zip/crc.py), not zlib: it must be the same number, piece by piece."""
    import random

    rng = random.Random(7)
    parts = [rng.randbytes(n) for n in (0, 1, 3, 15, 16, 17, 63, 64, 65, 4095, 262_144, 262_145, 1_000_003)]
    spool = Spool(tmp_path, memory_limit=memory_limit, max_bytes=10_000_000)
    for part in parts:
        spool.write(part)
    assert spool.on_disk == (memory_limit == 0)
    assert (spool.size, spool.crc32) == (sum(map(len, parts)), zlib.crc32(b"".join(parts)))
    spool.close()


def test_spools_of_one_request_share_a_memory_bound_and_the_rest_goes_to_disk(tmp_path: Path) -> None:
    gauge = MemoryGauge()
    account = MemoryAccount(1000, gauge)
    first = Spool(tmp_path, memory_limit=4000, max_bytes=10_000, account=account)
    second = Spool(tmp_path, memory_limit=4000, max_bytes=10_000, account=account)
    first.write(b"a" * 800)
    second.write(b"b" * 100)
    second.write(b"c" * 200)  # 800 + 100 + 200 is over the request's 1000: this spool goes to disk
    assert not first.on_disk and second.on_disk
    assert gauge.held == account.held == 800 and gauge.peak == 900
    assert b"".join(second.chunks()) == b"b" * 100 + b"c" * 200
    first.close()
    second.close()
    assert gauge.held == 0


def test_a_spool_on_disk_reads_the_same_for_readers_taking_turns(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_limit=0, max_bytes=10_000_000)
    data = os.urandom(3 * 1024 * 1024 + 5)
    spool.write(data)
    one, two = spool.chunks(), spool.chunks()
    got_one, got_two = bytearray(), bytearray()
    for a, b in zip(one, two, strict=True):  # interleaved: a shared file position would mix them up
        got_one += a
        got_two += b
    assert got_one == got_two == data
    spool.close()
