"""DATA_DIR is bounded: jobs for a cached archive share its file instead of copying it, and a
DATA_DIR over its budget refuses new jobs with a clear 503 (real service over HTTP, simulator)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from app.core.budget.disk import disk_usage
from simulator import SeedImage
from tests.conftest import Service, Sim

ARCHIVE_IMAGE_BYTES = 3_000_000


def _wait_complete(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["status"] in ("completed", "completed_with_errors", "failed"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_jobs_for_a_cached_archive_share_its_file(simulator: Sim, start_service: Callable[..., Service]) -> None:
    order_id = str(
        simulator.state.seed_order(name="Shared", images=[SeedImage(name="big.jpg", size=ARCHIVE_IMAGE_BYTES)])[
            "order_id"
        ]
    )
    service = start_service()
    with service.client() as client:
        streamed = client.get(f"/orders/{order_id}/images")
        assert streamed.status_code == 200 and len(streamed.content) > ARCHIVE_IMAGE_BYTES  # now cached
        enhanced = simulator.state.stats["enhanced"]
        ids = [client.post(f"/orders/{order_id}/jobs").json()["job_id"] for _ in range(10)]
        done = [_wait_complete(client, job_id) for job_id in ids]
        assert {d["status"] for d in done} == {"completed"}
        assert simulator.state.stats["enhanced"] == enhanced  # no upstream call: the cache served them all
        files = [service.settings.jobs_dir / f"{job_id}.zip" for job_id in ids]
        assert all(f.read_bytes() == streamed.content for f in files)
        assert {os.stat(f).st_ino for f in files} == {os.stat(files[0]).st_ino}  # one file, eleven names
        assert os.stat(files[0]).st_nlink >= 11  # the cache's name and the ten jobs'
        used = disk_usage(service.settings.data_dir)
        assert used < 2 * len(streamed.content), used  # ~1x the archive, not 11x


def test_a_data_dir_over_its_budget_refuses_new_jobs_clearly(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    order_id = str(simulator.state.seed_order(name="Budget", images=[SeedImage(name="a.jpg")])["order_id"])
    service = start_service(data_dir_max_bytes=4096)  # the job database alone is more than this
    with service.client() as client:
        refused = client.post(f"/orders/{order_id}/jobs")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "300"
        assert "storage budget (DATA_DIR_MAX_BYTES) is used up" in refused.json()["detail"]
        assert client.get(f"/orders/{order_id}/images").status_code == 200  # streams stay open (the cache has its own budget)


def test_a_nearly_full_disk_refuses_new_jobs_clearly(simulator: Sim, start_service: Callable[..., Service]) -> None:
    order_id = str(simulator.state.seed_order(name="Floor", images=[SeedImage(name="a.jpg")])["order_id"])
    service = start_service(data_dir_min_free_bytes=2**62)  # more free space than any disk has
    with service.client() as client:
        refused = client.post(f"/orders/{order_id}/jobs")
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"] == (
            "The service's disk is nearly full, so it takes no new jobs now; try again later"
        )
