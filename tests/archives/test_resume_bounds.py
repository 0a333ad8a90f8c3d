"""Resumes are bounded: their spools' memory, their downloads (shared between resumes of one layout)
and how many one caller may run at once.

Over real HTTP on loopback against the simulator. Memory is counted, not read from RSS: the spools'
own in-memory bytes, found by walking the service's objects (it runs in this process), must agree
with the service's gauge and stay under the bound. Downloads are counted at the simulator.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from app.core.spool import Spool
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.slow_client import SlowClient
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip

MiB = 1024 * 1024
IMAGES = 24
SIZE = 1_000_000


def seed(sim: Sim) -> str:
    images = [SeedImage(name=f"{i:02d}.jpg", size=SIZE) for i in range(IMAGES)]
    return str(sim.state.seed_order(name="Resume Court", images=images)["order_id"])


def cut(service: Service, order_id: str, keep: int = 200_000, before: Callable[[], None] = lambda: None) -> tuple[bytes, str]:
    """The first `keep` bytes of a streamed archive, then (after `before()`) a hang-up; its ETag."""
    got = bytearray()
    with service.client() as client, client.stream("GET", f"/orders/{order_id}/images") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw(65536):
            got += chunk
            if len(got) >= keep:
                before()  # still connected: leaving the loop hangs up
                break
    return bytes(got[:keep]), response.headers["etag"]


def spool_bytes_in_memory() -> int:
    """What every live spool of this process holds in memory, read from the spools themselves."""
    return sum(sum(map(len, obj._chunks)) for obj in gc.get_objects() if isinstance(obj, Spool))


def until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_three_resumes_hold_at_most_their_memory_bound_and_wait_on_disk(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    bound = 4 * MiB
    service = start_service(spool_request_memory_bytes=bound, max_resumes_per_caller=3, rate_limit="")
    order_id = seed(simulator)
    cuts = [cut(service, order_id) for _ in range(3)]  # three cut downloads: three layouts, no sharing
    services = service.app.state.services
    resumes = [
        SlowClient(service.url, f"/orders/{order_id}/images", rate=0, headers={"Range": f"bytes={len(p)}-", "If-Range": etag})
        for p, etag in cuts
    ]
    try:
        for resume in resumes:  # each answered 206: everything the rest of its archive needs is in hand
            status, _ = resume.head()
            assert status == 206
        held = spool_bytes_in_memory()
        # before: every remaining image of each resume in memory, about 3 x 24 MB
        assert held <= 3 * bound, held
        assert services.engine.spool_memory.held == held
        with service.client() as client:
            assert client.get("/api/stats").json()["spools"]["memory_bytes"] == held
        assert open_spool_files(service.settings.spool_dir) >= 3 * (IMAGES // 2)  # most of them wait on disk
    finally:
        for resume in resumes:
            resume.close()
    until(lambda: services.engine.spool_memory.held == 0 and open_spool_files(service.settings.spool_dir) == 0, what="release")


def test_two_racing_resumes_of_one_layout_download_each_image_once(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(rate_limit="")
    order_id = seed(simulator)

    def all_downloaded() -> None:  # so no download of the cut stream is in flight when the counting starts
        until(lambda: sum(simulator.state.assets_served.values()) == IMAGES, what="the stream's downloads")

    prefix, etag = cut(service, order_id, before=all_downloaded)
    services = service.app.state.services
    until(lambda: services.engine.active_batches == 0, what="the cut stream to close")
    simulator.state.assets_served.clear()
    simulator.state.configure(download_latency=0.3)  # the two resumes overlap for seconds

    def resume(_: int) -> httpx.Response:
        with service.client() as client:
            return client.get(f"/orders/{order_id}/images", headers={"Range": f"bytes={len(prefix)}-", "If-Range": etag})

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(resume, range(2))
    assert first.status_code == second.status_code == 206
    assert first.content == second.content
    members = check_zip(prefix + first.content)
    assert len([n for n in members if n.endswith(".jpg")]) == IMAGES
    # every image the rest of the archive needed was downloaded once, for both (before: twice each)
    served = dict(simulator.state.assets_served)
    assert len(served) >= IMAGES - 1 and set(served.values()) == {1}, served
    until(lambda: services.engine.shared_files.files == 0 and services.engine.spool_memory.held == 0, what="release")


def test_a_caller_over_its_resumes_in_flight_gets_429(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(max_resumes_per_caller=1, rate_limit="")
    order_id = seed(simulator)
    prefix, etag = cut(service, order_id)
    headers = {"Range": f"bytes={len(prefix)}-", "If-Range": etag}
    held = SlowClient(service.url, f"/orders/{order_id}/images", source="127.0.0.6", rate=0, headers=headers)
    try:
        assert held.head()[0] == 206
        transport = httpx.HTTPTransport(local_address="127.0.0.6")
        with httpx.Client(base_url=service.url, timeout=30, transport=transport) as same_caller:
            refused = same_caller.get(f"/orders/{order_id}/images", headers=headers)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) > 0
            assert "MAX_RESUMES_PER_CALLER" in refused.json()["detail"]
            assert same_caller.get(f"/orders/{order_id}/images").status_code == 200  # a whole download is not a resume
        with service.client() as other_caller:
            assert other_caller.get(f"/orders/{order_id}/images", headers=headers).status_code == 206
    finally:
        held.close()
