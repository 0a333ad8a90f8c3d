"""Slow and stalled readers cannot starve other callers, hold what they took, or hold up a single-flight.

Real service (served as `python -m app serve` serves it: uvloop and the project's protocol) over
loopback against the simulator; the slow readers are raw sockets with a tiny receive buffer, from
their own loopback addresses (another caller each, to the per-caller limits).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from app.server import server_options
from simulator import SeedImage
from tests.conftest import Service, Sim, service_settings
from tests.support.servers import serve
from tests.support.slow_client import SlowClient
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip

MB = 1_000_000


@pytest.fixture
def start(simulator: Sim, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: the service under the production server settings, pointed at the simulator."""
    stack = contextlib.ExitStack()

    def start_one(**overrides: Any) -> Service:
        settings = service_settings(simulator.url, tmp_path / "data", rate_limit="", **overrides)
        app = create_app(settings)
        url = stack.enter_context(serve(app, **server_options()))
        return Service(url, settings, app)

    with stack:
        yield start_one


def big_order(sim: Sim, images: int = 30, size: int = MB, name: str = "Big House") -> str:
    order = sim.state.seed_order(name=name, images=[SeedImage(name=f"{i}.jpg", size=size) for i in range(images)])
    return str(order["order_id"])


def small_order(sim: Sim) -> str:
    return str(sim.state.seed_order(name="Small Flat", images=[SeedImage(name="one.jpg", size=100_000)])["order_id"])


def until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def services_of(service: Service) -> Any:
    return service.app.state.services


@contextlib.contextmanager
def slow_readers(service: Service, path: str, rates: list[int], source: str = "127.0.0.2") -> Iterator[list[SlowClient]]:
    clients = [SlowClient(service.url, path, source=source, rate=rate) for rate in rates]
    try:
        for client in clients:
            status, _ = client.head()
            assert status == 200
        yield clients
    finally:
        for client in clients:
            client.close()


def test_four_slow_readers_leave_the_budget_to_another_callers_order(simulator: Sim, start: Callable[..., Service]) -> None:
    # a budget of 4 slots, 2 per order: before, four slow readers held every slot until they read on
    service = start(
        cache_ttl_seconds=0,
        max_global_downloads=4,
        min_global_downloads=4,
        max_concurrent_downloads=2,
        spool_ahead_bytes=4 * 1024 * 1024,
        stream_stall_timeout_seconds=600,  # no reader is cut here: the slots must come back by themselves
        max_streams_per_caller=8,
    )
    big, small = big_order(simulator), small_order(simulator)
    with slow_readers(service, f"/orders/{big}/images", [0, 0, 5, 5]):
        # the four batches have downloaded what they could (before: until all four slots were held)
        until(lambda: sum(simulator.state.assets_served.values()) >= 8, what="the slow readers' downloads")
        started = time.monotonic()
        with httpx.Client(base_url=service.url, timeout=20) as client:
            response = client.get(f"/orders/{small}/images")
        took = time.monotonic() - started
        assert response.status_code == 200
        assert "one.jpg" in check_zip(response.content)
        assert took < 15, took
        services = services_of(service)
        # the stalled streams hold no slot, and stopped downloading a bounded distance ahead of their readers
        until(lambda: services.engine.limiter.in_use == 0, what="the slots to come back")
        served = sum(n for image_id, n in simulator.state.assets_served.items())
        assert served < 4 * 10, served  # 4 MiB ahead + 2 in flight per stream, not the whole 30-image order each
