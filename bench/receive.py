"""Receiving only: each image fetcher downloads the same 100 x 2 MB from nginx, five at a time.

    python -m bench.receive                 # both fetchers, 3 rounds each, taking turns
    python -m bench.receive --rounds 5

The bodies are kept until the image is done (as a spool keeps them) and then dropped; nothing is
sent anywhere, so the CPU seconds per GB are the receive path's alone: aiohttp (kept for
downloads through a proxy) against the HTTP/1.1 client of app/core/upstream/http1.py.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from app.core.heap import keep_freed_buffers
from app.core.network.trusted_hosts import TrustedHosts
from app.core.upstream.http1 import Http1Fetcher
from app.core.upstream.transport import AiohttpFetcher, Fetcher
from bench.nginx import nginx
from harness import processes


def make(kind: str, origin: str) -> Fetcher:
    trusted = TrustedHosts.origin(origin)
    if kind == "http1":
        return Http1Fetcher(connect_timeout=10.0, read_timeout=30.0, trusted=trusted, proxies={})
    return AiohttpFetcher(connect_timeout=10.0, read_timeout=30.0, trusted=trusted, proxies={})


async def receive(kind: str, origin: str, urls: list[str], parallel: int) -> int:
    fetcher = make(kind, origin)
    gate = asyncio.Semaphore(parallel)
    received = 0

    async def one(url: str) -> None:
        nonlocal received
        async with gate, fetcher.get(url, {}) as reply:
            kept = [piece async for piece in reply.chunks()]
            received += sum(map(len, kept))

    try:
        await asyncio.gather(*(one(url) for url in urls))
    finally:
        await fetcher.aclose()
    return received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=5)
    args = parser.parse_args()
    keep_freed_buffers()  # as the service does (app/core/upstream/factory.py)
    with tempfile.TemporaryDirectory() as tmp, processes.simulator() as sim, nginx(Path(tmp)) as web:
        order_id = processes.seed(sim.url, args.images, args.size)
        ids = web.add_order(httpx.get(f"{sim.url}/v3/orders/{order_id}").raise_for_status().json(), args.size)
        urls = [f"{web.url}/assets/{image_id}.jpg" for image_id in ids]
        for _ in range(args.rounds):
            for kind in ("aiohttp", "http1"):
                before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                size = uvloop.run(receive(kind, web.url, urls * 4, args.parallel))
                after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
                gb = size / 1e9
                user, system = (after.ru_utime - before.ru_utime) / gb, (after.ru_stime - before.ru_stime) / gb
                print(
                    f"{kind:8} {user + system:.2f} CPU s per GB (user {user:.2f}, system {system:.2f}), "
                    f"{gb * 1e3 / wall:.0f} MB/s, {(after.ru_minflt - before.ru_minflt) / gb:.0f} minor faults per GB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
