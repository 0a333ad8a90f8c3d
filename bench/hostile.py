"""What hostile requests and a hostile upstream cost the service: peak memory, measured.

    python -m bench.hostile

1. `python -m app serve` as its own process (demo mode, a service key and a webhook token set);
   100 MB bodies sent with a wrong token, and without a length; its peak RSS (VmHWM) before/after.
2. In this process: an order fetch answered by a 1.6 MB gzip that inflates to 1.5 GiB of JSON.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import raw_http
from harness.servers import free_port

MB = 1024 * 1024


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def hostile_bodies() -> None:
    port = free_port()
    env = os.environ | {
        "DATA_DIR": tempfile.mkdtemp(), "AUTOENHANCE_API_KEY": "", "LOG_LEVEL": "ERROR",
        "SERVICE_API_KEY": "the-key", "AUTOENHANCE_WEBHOOK_TOKEN": "the-token", "RATE_LIMIT": "",
    }
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        before = _hwm_mib(process.pid)
        piece = b"x" * MB
        cases = [
            ("100 MB to /webhooks/autoenhance, wrong token", "/webhooks/autoenhance",
             {"Authorization": "wrong", "Content-Length": str(100 * MB)}, [piece] * 100),
            ("100 MB to /v1/orders/{id}/jobs, no key", "/v1/orders/7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c/jobs",
             {"Content-Length": str(100 * MB)}, [piece] * 100),
            ("100 MB chunked to /v1/orders/{id}/jobs, right key", "/v1/orders/7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c/jobs",
             {"X-API-Key": "the-key", "Transfer-Encoding": "chunked"},
             [b"100000\r\n" + piece + b"\r\n"] * 100),
        ]
        for label, path, headers, body in cases:
            answer = raw_http.request(url, "POST", path, headers, body, timeout=60)
            print(f"{label}: HTTP {answer.status} in {answer.seconds:.2f} s; "
                  f"server peak RSS {_hwm_mib(process.pid):.0f} MiB (at start {before:.0f} MiB)")
    finally:
        process.terminate()
        process.wait(15)


def gzip_bomb() -> None:
    from app import create_app
    from harness.bomb_upstream import Bomb
    from harness.servers import serve
    from harness.service import service_settings

    bomb = Bomb(pad=1536 * MB)
    payload, _ = bomb.body()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with serve(bomb.app()) as upstream:
        settings = service_settings(upstream, Path(tempfile.mkdtemp()), log_level="CRITICAL")
        with serve(create_app(settings)) as url:
            answer = httpx.get(f"{url}/v1/orders/{bomb.order_id}/images", timeout=120)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"order fetch answered by a {len(payload) / 1e6:.1f} MB gzip of {bomb.pad / 2**30:.1f} GiB: "
          f"HTTP {answer.status_code}; peak RSS {peak:.0f} MiB (before {before:.0f} MiB)")


if __name__ == "__main__":
    hostile_bodies()
    gzip_bomb()
