"""An archive past 4 GiB: members switch to ZIP64 at the boundary and every reader accepts it.

    python -m bench.zip64 [--members 70 --member-mib 64]

Writes the archive to a temporary file (about 4.5 GB), then checks it with Python's zipfile,
`unzip -t` and `bsdtar -tf`, and checks that a resume replayed from offsets around the switch and
inside the central directory gives the file's own bytes there. Not part of `make test` (a minute
or two and 4.5 GB of disk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

from app.core.zip.format import Entry
from app.core.zip.format import write as zip_bytes
from app.core.zip.layout import LayoutMember
from app.core.zip.writer import Member, ZipWriter

MiB = 1024 * 1024


BLOCK = random.Random(64).randbytes(MiB)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def crc_of(member_bytes: int) -> int:
    crc = 0
    for _ in range(member_bytes // MiB):
        crc = zlib.crc32(BLOCK, crc)
    return crc


async def write(path: Path, members: int, member_bytes: int) -> float:
    block, chunks, crc = BLOCK, member_bytes // MiB, crc_of(member_bytes)
    writer = ZipWriter()
    now = NOW
    for i in range(members):
        info = LayoutMember(f"photo-{i:03d}.jpg", chunks * MiB, crc)
        writer.feed(Member(info, lambda: iter([block] * chunks), now, in_memory=True))
    writer.finish()
    started = time.perf_counter()
    with open(path, "wb") as out:
        async for chunk in writer.chunks():
            out.write(chunk)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=70)
    parser.add_argument("--member-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = Path(tmp) / "big.zip"
        seconds = asyncio.run(write(path, args.members, args.member_mib * MiB))
        size = path.stat().st_size
        print(f"wrote {size / 1e9:.2f} GB in {seconds:.1f} s ({size / MiB / seconds:.0f} MiB/s)")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            assert len(infos) == args.members
            first64 = next((i for i, info in enumerate(infos) if info.extract_version >= 45), None)
            print(f"zipfile: {len(infos)} members, first ZIP64 member #{first64} at offset {infos[first64].header_offset if first64 is not None else '-'}")
            assert zf.testzip() is None
        print("zipfile: every CRC checks")
        unzip = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True, check=False)
        print("unzip -t:", unzip.stdout.strip() or unzip.stderr.strip())
        assert unzip.returncode == 0
        if shutil.which("bsdtar"):
            listed = subprocess.run(["bsdtar", "-tf", str(path)], capture_output=True, text=True, check=True)
            assert len(listed.stdout.splitlines()) == args.members
            print(f"bsdtar: lists {args.members} members")
        replay_check(path, infos, args.members, args.member_mib * MiB)


def replay_check(path: Path, infos: list[zipfile.ZipInfo], members: int, member_bytes: int) -> None:
    """Bytes replayed from an offset (as a resume does) equal the file's from there on."""
    crc, chunks = crc_of(member_bytes), member_bytes // MiB
    entries = [Entry(f"photo-{i:03d}.jpg", chunks * MiB, crc, NOW) for i in range(members)]
    first64 = next(i for i, info in enumerate(infos) if info.extract_version >= 45)
    with zipfile.ZipFile(path) as zf:
        cd_offset = zf.start_dir
    for start in (infos[first64 - 1].header_offset + 7, infos[first64].header_offset + 40, cd_offset + 10):
        source = [(e, lambda: iter([BLOCK] * chunks)) for e in entries]
        with open(path, "rb") as file:
            file.seek(start)
            for chunk in zip_bytes(source, start=start):
                assert file.read(len(chunk)) == chunk, start
            assert file.read(1) == b"", start
        print(f"replay from byte {start}: identical to the file's bytes")


if __name__ == "__main__":
    main()
