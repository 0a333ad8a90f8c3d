"""Peak memory of a demo-mode service while four clients upload a small PNG of huge dimensions at once.

`python -m bench.upload_memory [TREE]` starts `python -m app serve` from TREE (default: this
checkout; pass an exported older tree to compare), posts a 7700 x 7700 all-black RGB PNG (about
170 KiB) to /api/create-order from four threads, and prints the statuses and VmRSS/VmHWM (kB)
before and after from /proc (Linux).
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def black_png(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG, all zeros: compresses about a thousandfold."""
    row = b"\x00" * (1 + 3 * width)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as status:
        return {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}


def main(tree: Path) -> None:
    png = black_png(7700, 7700)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"DATA_DIR": tempfile.mkdtemp(), "AUTOENHANCE_API_KEY": "", "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        before = _memory(proc.pid)

        def send(n: int) -> int:
            files = [("files", (f"huge{n}.png", png, "image/png"))]
            return httpx.post(f"{url}/api/create-order", files=files, timeout=300).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(send, range(4)))
        print(f"PNG {len(png) // 1024} KiB; statuses {statuses}; before {before}; after {_memory(proc.pid)}")
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
