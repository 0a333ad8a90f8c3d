"""Single-flight on one box: identical requests arriving together fetch the upstream once.

Real service over loopback against the simulator; the simulator's own route counters are the proof.
The cross-instance case is in tests/system/test_cluster.py; the Redis claims' lease is tested here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis

from app.archives.flights import Flights
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cluster import REDIS_URL

IMAGES = 4


def seed(sim: Sim) -> str:
    images = [SeedImage(name=f"{n}.jpg", size=40_000) for n in range(IMAGES)]
    return str(sim.state.seed_order(name="Flight Street", images=images)["order_id"])


def test_identical_streams_together_fetch_once_and_all_get_the_archive(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service()
    order_id = seed(simulator)
    simulator.state.download_latency = 0.2  # the three requests overlap
    simulator.state.reset_stats()
    with service.client() as client, ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: client.get(f"/orders/{order_id}/images"), range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sorted(r.headers["x-cache"] for r in responses) == ["hit", "hit", "miss"]
    assert len({hashlib.sha256(r.content).hexdigest() for r in responses}) == 1
    assert len(zipfile.ZipFile(io.BytesIO(responses[0].content)).namelist()) == IMAGES + 1  # + manifest
    assert simulator.state.stats["enhanced"] == IMAGES  # one upstream fetch per image, not three


def test_identical_jobs_together_fetch_once_and_each_has_its_own_archive(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service()
    order_id = seed(simulator)
    simulator.state.download_latency = 0.2
    simulator.state.reset_stats()
    with service.client() as client:
        ids = [client.post(f"/orders/{order_id}/jobs").json()["job_id"] for _ in range(3)]
        deadline = time.monotonic() + 20
        while not all(client.get(f"/jobs/{i}").json()["status"] == "completed" for i in ids):
            assert time.monotonic() < deadline, [client.get(f"/jobs/{i}").json() for i in ids]
            time.sleep(0.05)
        archives = [client.get(f"/jobs/{i}/download").content for i in ids]
        views = [client.get(f"/jobs/{i}").json() for i in ids]
    assert simulator.state.stats["enhanced"] == IMAGES
    assert len(set(archives)) == 1 and len(archives[0]) == views[0]["bytes"]
    assert {(v["downloaded"], v["failed"]) for v in views} == {(IMAGES, 0)}


def test_a_partial_result_is_not_shared_so_a_follower_really_retries(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    """Like the cache: a leader with failures is not reused; the follower fetches for itself."""
    service = start_service()
    images = [SeedImage(name="ok.jpg", size=40_000), SeedImage(name="bad.jpg", status="error")]
    order_id = str(simulator.state.seed_order(name="Partial", images=images)["order_id"])
    simulator.state.download_latency = 0.3
    simulator.state.reset_stats()
    with service.client() as client, ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda _: client.get(f"/orders/{order_id}/images"), range(2)))
    assert [r.headers["x-cache"] for r in responses] == ["miss", "miss"]
    assert simulator.state.stats["enhanced"] == 2


def test_a_job_after_a_stream_copies_the_cached_archive_without_fetching(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    """One archive policy for both doors: a job finds the archive a stream cached, as a stream would."""
    service = start_service()
    order_id = seed(simulator)
    with service.client() as client:
        streamed = client.get(f"/orders/{order_id}/images")
        assert streamed.status_code == 200 and streamed.headers["x-cache"] == "miss"
        simulator.state.reset_stats()
        job_id = client.post(f"/orders/{order_id}/jobs").json()["job_id"]
        deadline = time.monotonic() + 20
        while (view := client.get(f"/jobs/{job_id}").json())["status"] not in (
            "completed",
            "completed_with_errors",
            "failed",
        ):
            assert time.monotonic() < deadline, view
            time.sleep(0.05)
        archive = client.get(f"/jobs/{job_id}/download").content
        stats = client.get("/api/stats").json()
    assert (view["status"], view["downloaded"], view["failed"], view["bytes"]) == ("completed", IMAGES, 0, len(archive))
    assert archive == streamed.content
    assert simulator.state.stats["enhanced"] == 0  # not one image fetched again
    assert stats["zips_served"] == 2 and stats["bytes_sent"] == 2 * len(archive)


def test_a_crashed_leaders_claim_lapses_and_an_instance_cannot_land_anothers(redis_prefix: str) -> None:
    async def scenario() -> None:
        a = Flights(aioredis.from_url(REDIS_URL, decode_responses=True), redis_prefix, lease=0.6)
        b = Flights(aioredis.from_url(REDIS_URL, decode_responses=True), redis_prefix, lease=0.6)
        flight = await a.claim("k", "job:1")
        assert flight is not None and await b.claim("k", "job:2") is None
        assert await b.leader("k") == "job:1"
        assert flight._renewer is not None
        flight._renewer.cancel()  # the leader's process dies
        started = time.monotonic()
        async with asyncio.timeout(5):
            await b.wait("k")
        assert 0.3 < time.monotonic() - started < 4.0  # after the 0.6 s lease, well before the 5 s timeout
        second = await b.claim("k", "job:2")
        assert second is not None
        await a._land(flight)  # the presumed-dead leader wakes and lands: b's claim must survive
        assert await a.leader("k") == "job:2"
        await second.land()
        assert await a.leader("k") is None
        await a.aclose()
        await b.aclose()

    asyncio.run(scenario())
