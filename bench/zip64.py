"""An archive past 4 GiB: members switch to ZIP64 at the boundary and every reader accepts it.

    python -m bench.zip64 [--members 70 --member-mib 64]

Writes the archive to a temporary file (about 4.5 GB), then checks it with Python's zipfile,
`unzip -t` and `bsdtar -tf`. Not part of `make test` (a minute and 4.5 GB of disk).
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

from app.core.archive import Member, ZipWriter

MiB = 1024 * 1024


async def write(path: Path, members: int, member_bytes: int) -> float:
    block = random.Random(64).randbytes(MiB)
    chunks = member_bytes // MiB
    crc = 0
    for _ in range(chunks):
        crc = zlib.crc32(block, crc)
    writer = ZipWriter()
    now = datetime.now(UTC)
    for i in range(members):
        writer.feed(Member(f"photo-{i:03d}.jpg", chunks * MiB, crc, lambda: iter([block] * chunks), now))
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


if __name__ == "__main__":
    main()
