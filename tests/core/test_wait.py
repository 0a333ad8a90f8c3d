"""wait=true: poll the order until nothing is processing, then download; at wait_timeout, serve what is
ready and say so. Images use the simulator's own processing lifecycle (ready after N seconds)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from simulator import SeedImage, SimulatorState
from tests.conftest import Service
from tests.support.zipcheck import check_zip


def _order_with_one_processing(sim_state: SimulatorState, seconds: float) -> tuple[str, str]:
    order = sim_state.seed_order(images=[SeedImage(name="ready.jpg", size=3000), SeedImage(name="late.jpg", size=3000)])
    late = order["images"][1]["image_id"]
    sim_state.images[late].start_processing(time.time(), seconds)
    return order["order_id"], late


def test_wait_polls_until_ready_then_serves_everything(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _order_with_one_processing(sim_state, 1.5)
    started = time.monotonic()
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"wait": "true", "wait_timeout": 20})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert sorted(check_zip(response.content)) == ["_manifest.json", "late.jpg", "ready.jpg"]
    assert 1.4 <= elapsed < 10
    assert sim_state.stats["order_get"] >= 2  # polled, with backoff (not a tight loop)
    assert sim_state.stats["order_get"] <= 4


def test_at_the_deadline_it_serves_what_is_ready_and_says_so(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, late = _order_with_one_processing(sim_state, 60)
    started = time.monotonic()
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"wait": "true", "wait_timeout": 1.5})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    members = check_zip(response.content)
    assert sorted(members) == ["_download_report.txt", "_manifest.json", "ready.jpg"]
    report = members["_download_report.txt"].decode()
    assert late in report
    assert "still not ready after waiting 1.5 s (wait_timeout); served what was ready" in report
    failure = json.loads(members["_manifest.json"])["failures"][0]
    assert "status 'processing'" in failure["reason"]
    assert 1.4 <= elapsed < 5


def test_without_wait_processing_images_are_reported_at_once(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _order_with_one_processing(sim_state, 60)
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images")
    members = check_zip(response.content)
    assert "wait_timeout" not in members["_download_report.txt"].decode()
    assert sim_state.stats["order_get"] == 1


def test_job_waits_in_the_background(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _order_with_one_processing(sim_state, 1.5)
    with service.client() as client:
        started = time.monotonic()
        accepted = client.post(f"/orders/{order_id}/jobs", params={"wait": "true", "wait_timeout": 20})
        assert accepted.status_code == 202
        assert time.monotonic() - started < 1.4  # the 202 does not wait (1.5 s of processing); the job does
        status_url = accepted.json()["status_url"]
        deadline = time.monotonic() + 20
        while (job := client.get(status_url).json())["status"] not in ("completed", "completed_with_errors", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["status"] == "completed" and job["failed"] == 0 and job["downloaded"] == 2
        download = client.get(accepted.json()["download_url"])
    assert sorted(check_zip(download.content)) == ["_manifest.json", "late.jpg", "ready.jpg"]


def test_bad_wait_timeout_is_a_422(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service()
    order_id, _ = _order_with_one_processing(sim_state, 60)
    with service.client() as client:
        for value in ("0", "-1", "601", "soon"):
            response = client.get(f"/orders/{order_id}/images", params={"wait": "true", "wait_timeout": value})
            assert response.status_code == 422, value
            assert "wait_timeout" in response.json()["detail"]
    assert sim_state.stats["order_get"] == 0  # bad input costs no upstream call


def test_a_caller_who_hangs_up_stops_the_polling(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id, _ = _order_with_one_processing(sim_state, 60)
    with httpx.Client(base_url=service.url) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"/orders/{order_id}/images", params={"wait": "true", "wait_timeout": 60}, timeout=0.3)
    time.sleep(3.5)  # polls would have come at about 1 s and 3 s
    assert sim_state.stats["order_get"] == 1  # the first fetch only: the wait noticed the hang-up
