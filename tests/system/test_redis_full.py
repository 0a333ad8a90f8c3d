"""Redis as a bounded resource: the layouts of dropped downloads stay few and short-lived, and a Redis
that refuses writes (full under `noeviction`) makes /ready say so and job creation answer 503, not 500.
Each test runs its own redis-server (a tiny maxmemory for the full one), never the machine's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.archives import layout_store as layouts
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.redis_server import RedisServer, private_redis

PREFIX = "full:"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis(tmp_path, "--maxmemory", "8mb", "--maxmemory-policy", "noeviction") as started:
        yield started


def _drop_download(client: httpx.Client, order_id: str) -> None:
    """Read the head of the archive and hang up, as a flaky mobile link does."""
    with client.stream("GET", f"/orders/{order_id}/images") as response:
        assert response.status_code == 200
        next(response.iter_raw(1024))


def test_layouts_of_dropped_downloads_are_bounded_in_number_and_life(
    simulator: Sim, start_service: Callable[..., Service], server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layouts, "MAX_REDIS_LAYOUTS", 3)
    order_id = str(
        simulator.state.seed_order(
            name="Dropped", images=[SeedImage(name=f"{n}.jpg", size=30_000) for n in range(8)]
        )["order_id"]
    )
    simulator.state.download_latency = 0.3  # the archive is mid-way when the client hangs up
    service = start_service(redis_url=server.url, redis_key_prefix=PREFIX, cache_ttl_seconds=86400)
    with service.client() as client:
        for _ in range(6):
            _drop_download(client, order_id)
    with server.client() as direct:
        kept = list(direct.scan_iter(match=f"{PREFIX}layout:*"))
        assert 0 < len(kept) <= 3, kept  # the oldest were deleted
        ttls = [direct.ttl(key) for key in kept]
        assert all(0 < ttl <= layouts.INCOMPLETE_TTL_SECONDS for ttl in ttls), ttls  # not the cache's day


def test_a_redis_that_refuses_writes_is_not_ready_and_jobs_answer_503(
    simulator: Sim, start_service: Callable[..., Service], server: RedisServer
) -> None:
    order_id = str(simulator.state.seed_order(name="Full", images=[SeedImage(name="a.jpg")])["order_id"])
    service = start_service(redis_url=server.url, redis_key_prefix=PREFIX, job_workers_in_api=False)
    with service.client() as client, server.client() as direct:
        assert client.get("/ready").json()["checks"]["redis"]["ok"] is True
        filled = 0
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # fill it, as the layouts of dropped streams did
            while True:
                direct.set(f"junk:{filled}", "x" * 100_000)
                filled += 1
        assert filled > 0
        # Full only just: a key expiring or a client buffer shrinking brings it under maxmemory again
        # and one write passes (it did, on a loaded machine). Lower the limit well under what is used.
        used = int(direct.info("memory")["used_memory"])
        direct.config_set("maxmemory", used - 1024 * 1024)
        ready = client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["redis"] == ready.json()["checks"]["redis"] | {
            "ok": False,
            "detail": "Redis refuses writes: out of memory (maxmemory reached under noeviction)",
        }
        refused = client.post(f"/orders/{order_id}/jobs")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["detail"] == "The service's shared store (Redis) refuses writes (full or read-only); try again later"
        direct.config_set("maxmemory", "8mb")
        direct.delete(*[f"junk:{n}" for n in range(filled)])
        assert client.get("/ready").status_code == 200
        assert client.post(f"/orders/{order_id}/jobs").status_code == 202
