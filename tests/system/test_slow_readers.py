"""Slow and stalled readers cannot starve other callers, hold what they took, or hold up a single-flight.

Real service (served as `python -m app serve` serves it: uvloop and the project's protocol) over
loopback against the simulator; the slow readers are raw sockets with a tiny receive buffer, from
their own loopback addresses (another caller each, to the per-caller limits).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from app.server import server_options
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Service, Sim, service_settings
from tests.support.cluster import REDIS_URL
from tests.support.slow_client import SlowClient
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip

MB = 1_000_000


@pytest.fixture
def start(simulator: Sim, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: the service under the production server settings, pointed at the simulator."""
    stack = contextlib.ExitStack()

    def start_one(**overrides: Any) -> Service:
        data_dir = overrides.pop("data_dir", tmp_path / "data")
        settings = service_settings(simulator.url, data_dir, rate_limit="", **overrides)
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


@pytest.mark.parametrize("scale", ["one instance", "two instances, one budget in Redis"])
def test_four_slow_readers_leave_the_budget_to_another_callers_order(
    simulator: Sim, start: Callable[..., Service], request: pytest.FixtureRequest, tmp_path: Path, scale: str
) -> None:
    # a budget of 4 slots, 2 per order: before, four slow readers held every slot until they read on
    settings: dict[str, Any] = {
        "cache_ttl_seconds": 0,
        "max_global_downloads": 4,
        "min_global_downloads": 4,
        "max_concurrent_downloads": 2,
        "spool_ahead_bytes": 4 * 1024 * 1024,
        "stream_stall_timeout_seconds": 600,  # no reader is cut here: the slots must come back by themselves
        "max_streams_per_caller": 8,
    }
    if scale == "one instance":
        service = other = start(**settings)
    else:  # the slow readers on one instance, the other caller on another: the budget is cluster-wide
        prefix = request.getfixturevalue("redis_prefix")
        settings |= {"redis_url": REDIS_URL, "redis_key_prefix": prefix, "shared_budget": True}
        service = start(data_dir=tmp_path / "a", **settings)
        other = start(data_dir=tmp_path / "b", **settings)
    big, small = big_order(simulator), small_order(simulator)
    with slow_readers(service, f"/orders/{big}/images", [0, 0, 5, 5]):
        # the four batches have downloaded what they could (before: until all four slots were held)
        until(lambda: sum(simulator.state.assets_served.values()) >= 8, what="the slow readers' downloads")
        started = time.monotonic()
        with httpx.Client(base_url=other.url, timeout=20) as client:
            response = client.get(f"/orders/{small}/images")
        took = time.monotonic() - started
        assert response.status_code == 200
        assert "one.jpg" in check_zip(response.content)
        assert took < 15, took
        services = services_of(service)
        # the stalled streams hold no slot, and stopped downloading a bounded distance ahead of their readers
        until(lambda: services.engine.limiter.in_use == 0, what="the slots to come back")
        served = sum(simulator.state.assets_served.values())
        assert served <= 4 * 30 // 2, served  # 4 MiB ahead of what the socket took, not the whole order (120)


def open_files_under(directory: Path) -> int:
    """Descriptors of this process (the service runs in it) open on files under `directory`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory))
    return count


@pytest.mark.parametrize("source", ["stream", "cache hit"])
def test_a_stalled_reader_is_cut_after_the_deadline_and_everything_it_held_is_released(
    simulator: Sim, start: Callable[..., Service], source: str
) -> None:
    service = start(stream_stall_timeout_seconds=2, spool_memory_bytes=0 if source == "stream" else 4 * MB)
    services = services_of(service)
    order_id = big_order(simulator, images=12)
    if source == "cache hit":
        with httpx.Client(base_url=service.url, timeout=60) as client:
            assert client.get(f"/orders/{order_id}/images").status_code == 200
    reader = SlowClient(service.url, f"/orders/{order_id}/images", source="127.0.0.3", rate=0)
    try:
        status, headers = reader.head()
        assert status == 200
        assert headers.get("x-cache") == ("miss" if source == "stream" else "hit")
        if source == "cache hit":  # the cached file is open while it is sent (and closed once the response ends)
            until(lambda: open_files_under(service.settings.cache_dir) > 0, what="the cached file to be sent")
        # cut on the server's side: no batch, no slot, no spool (memory or file), no open archive file
        until(
            lambda: services.engine.active_batches == 0
            and services.engine.limiter.in_use == 0
            and services.engine.spool_memory.held == 0
            and open_spool_files(service.settings.spool_dir) == 0
            and open_files_under(service.settings.cache_dir) == 0,
            what="the stalled response to be cut and release what it held",
        )
        ending = reader.finish()
    finally:
        reader.close()
    # the client sees a broken transfer, never an ending that looks whole
    assert ending.how in ("reset", "eof"), ending.how
    _, _, body = ending.data.partition(b"\r\n\r\n")
    assert not body.endswith(b"\r\n0\r\n\r\n")
    if source == "cache hit":
        assert len(body) < int(headers["content-length"])


def from_address(service: Service, address: str) -> httpx.Client:
    """An HTTP client whose connections come from `address` (another caller to the per-caller limits)."""
    return httpx.Client(base_url=service.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_a_caller_over_its_downloads_in_flight_gets_429_while_others_are_served(
    simulator: Sim, start: Callable[..., Service]
) -> None:
    service = start(max_streams_per_caller=2, stream_stall_timeout_seconds=600, cache_ttl_seconds=0)
    order_id, small = big_order(simulator, images=10), small_order(simulator)
    path = f"/orders/{order_id}/images"
    with slow_readers(service, path, [0, 0], source="127.0.0.4") as readers:
        with from_address(service, "127.0.0.4") as same_caller:
            refused = same_caller.get(f"/v1/orders/{small}/images")  # the versioned path counts alike
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) > 0
        assert "MAX_STREAMS_PER_CALLER" in refused.json()["detail"]
        with from_address(service, "127.0.0.1") as other_caller:
            assert other_caller.get(f"/orders/{small}/images").status_code == 200
        for reader in readers:
            reader.close()
        # a download that ends (here: its caller hung up) gives its place back
        with from_address(service, "127.0.0.4") as same_caller:
            until(lambda: same_caller.get(f"/orders/{small}/images").status_code == 200, what="the caller's places")


@pytest.mark.parametrize("follower", ["stream", "job"])
def test_a_single_flight_follower_does_not_wait_behind_a_stalled_leader(
    simulator: Sim, start: Callable[..., Service], follower: str
) -> None:
    service = start(stream_stall_timeout_seconds=600)  # the leader is never cut: it must step aside by itself
    order_id = big_order(simulator, images=12)
    leader = SlowClient(service.url, f"/orders/{order_id}/images", source="127.0.0.5", rate=0)
    try:
        status, _ = leader.head()  # the leader has claimed the archive and is streaming it
        assert status == 200
        started = time.monotonic()
        with httpx.Client(base_url=service.url, timeout=20) as client:
            if follower == "stream":
                response = client.get(f"/orders/{order_id}/images")
                assert response.status_code == 200
                assert len([n for n in check_zip(response.content) if n.endswith(".jpg")]) == 12
            else:
                job = client.post(f"/orders/{order_id}/jobs").json()
                until(lambda: client.get(f"/jobs/{job['job_id']}").json()["status"] == "completed", timeout=20, what="the job")
                assert len(check_zip(client.get(f"/jobs/{job['job_id']}/download").content)) == 13
        # before: a stream waited 120 s for the leader, a job up to an hour
        assert time.monotonic() - started < 15
    finally:
        leader.close()


def read_archive(service: Service, order_id: str, *, pause_after: int | None = None, on_pause: Callable[[], None] = lambda: None) -> bytes:
    """The archive, read 256 KB at a time with a short rest after each (about 5 MB/s: slower than the
    downloads, and taking an image every fifth of a second); `pause_after` bytes, then `on_pause()`."""
    body = bytearray()
    with httpx.stream("GET", f"{service.url}/orders/{order_id}/images", timeout=60) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes(256 * 1024):
            body += piece
            if pause_after is not None and len(body) >= pause_after:
                pause_after = None
                on_pause()
            time.sleep(0.05)
    return bytes(body)


AHEAD_OF_A_READER = {"cache_ttl_seconds": 0, "max_concurrent_downloads": 3, "spool_request_memory_bytes": 8 * 1024 * 1024,
                     "spool_ahead_bytes": 64 * 1024 * 1024, "stream_stall_timeout_seconds": 600}


def test_a_reader_that_keeps_taking_images_is_run_ahead_of_only_as_far_as_memory_holds(
    simulator: Sim, start: Callable[..., Service]
) -> None:
    """Before: downloads ran 64 MiB ahead of a reader slower than them, so past the 8 MiB of memory
    nearly every image was written to disk and read back a moment later."""
    service = start(**AHEAD_OF_A_READER)
    order_id = big_order(simulator, images=30)
    members = check_zip(read_archive(service, order_id))
    assert len([n for n in members if n.endswith(".jpg")]) == 30
    stats = services_of(service).stats
    assert (stats.images_downloaded, stats.images_waited_on_disk) == (30, 0)


def test_a_reader_that_paused_lets_downloads_run_on_onto_disk(simulator: Sim, start: Callable[..., Service]) -> None:
    service = start(**AHEAD_OF_A_READER)
    order_id = big_order(simulator, images=30)

    def paused() -> None:  # the reader stops taking images: the whole order is downloaded meanwhile
        until(lambda: sum(simulator.state.assets_served.values()) >= 30, timeout=20, what="the order's downloads")

    members = check_zip(read_archive(service, order_id, pause_after=MB, on_pause=paused))
    assert len([n for n in members if n.endswith(".jpg")]) == 30
    # what the socket buffers took before the pause showed is more than the 8 MiB of memory could hold
    assert services_of(service).stats.images_waited_on_disk > 0


def test_without_memory_for_images_downloads_run_ahead_of_a_reader_that_keeps_taking_them(
    simulator: Sim, start: Callable[..., Service]
) -> None:
    """SPOOL_REQUEST_MEMORY_BYTES=0: every image waits on disk whatever happens, so waiting for memory
    would only hold the downloads back to the reader's pace."""
    service = start(**(AHEAD_OF_A_READER | {"spool_request_memory_bytes": 0}))
    order_id = big_order(simulator, images=30)
    served_when: list[int] = []

    def count() -> None:
        time.sleep(0.5)  # the reader goes on at its pace: downloads have had time to run ahead
        served_when.append(sum(simulator.state.assets_served.values()))

    members = check_zip(read_archive(service, order_id, pause_after=3 * MB, on_pause=count))
    assert len([n for n in members if n.endswith(".jpg")]) == 30
    assert served_when[0] >= 20, served_when  # all 30 here; held to the reader's pace, 12
