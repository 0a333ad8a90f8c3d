"""The ceiling: an order's images fetched straight from the simulator, no service in between.

A plain httpx client (the HTTP stack our service uses upstream) with a fixed number of workers
(5, the service's per-order concurrency) fetches the order, then every enhanced image, following
redirects and throwing the bytes away. Nothing our service does can be faster than this.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from harness.processes import SIM_KEY, Fetch


async def _fetch(sim_url: str, order_id: str, workers: int) -> Fetch:
    started = time.perf_counter()
    size = 0
    first: float | None = None
    async with httpx.AsyncClient(
        base_url=sim_url, headers={"x-api-key": SIM_KEY}, follow_redirects=True, timeout=120,
        limits=httpx.Limits(max_keepalive_connections=workers * 2),
    ) as client:
        order = (await client.get(f"/v3/orders/{order_id}")).raise_for_status().json()
        queue = [image["image_id"] for image in order["images"]]

        async def worker() -> None:
            nonlocal size, first
            while queue:
                image_id = queue.pop()
                async with client.stream("GET", f"/v3/images/{image_id}/enhanced") as response:
                    response.raise_for_status()
                    async for chunk in response.aiter_raw():
                        if first is None:
                            first = time.perf_counter() - started
                        size += len(chunk)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return Fetch(200, size, first or 0.0, time.perf_counter() - started)


def fetch_direct(sim_url: str, order_id: str, workers: int = 5) -> Fetch:
    """Download every image of `order_id` straight from the simulator with `workers` in parallel."""
    return asyncio.run(_fetch(sim_url, order_id, workers))
