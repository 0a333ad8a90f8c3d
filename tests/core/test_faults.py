"""The fault matrix: every upstream fault, injected through the simulator, ends in a valid ZIP with a
correct report or in a documented error status with a clear message, within a bounded time.

README's "Resilience" table is this file, row by row.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from harness.servers import free_port, serve
from simulator import Fault, SeedImage, SimulatorState
from simulator import create_app as create_simulator
from tests.conftest import TEST_KEY, Service
from tests.support.zipcheck import check_zip

IMAGE_TIMEOUT = 2.0
BOUND = 20.0  # no case may take longer than this, whatever upstream does
FAST = {"image_timeout_seconds": IMAGE_TIMEOUT, "order_timeout_seconds": IMAGE_TIMEOUT, "cache_ttl_seconds": 0,
        "breaker_threshold": 1000}


@pytest.fixture
def svc(start_service: Callable[..., Service]) -> Service:
    return start_service(**FAST)


def seed(sim: SimulatorState, names: list[str], size: int = 5_000, **extra: Any) -> tuple[str, list[str]]:
    order = sim.seed_order(name="Fault order", images=[SeedImage(name=n, size=size, **extra) for n in names])
    return order["order_id"], [img["image_id"] for img in order["images"]]


def get(service: Service, order_id: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    with service.client(timeout=BOUND + 10) as client:
        response = client.get(f"/orders/{order_id}/images")
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"took {elapsed:.1f}s"
    return response, elapsed


def archive(response: httpx.Response) -> tuple[dict[str, bytes], dict[str, Any]]:
    assert response.status_code == 200, response.text
    members = check_zip(response.content)
    return members, json.loads(members["_manifest.json"])


def report(members: dict[str, bytes]) -> str:
    return members["_download_report.txt"].decode()


# -- image faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, times=1),
        Fault(kind="status", status=500, times=2),
        Fault(kind="rate_limit", times=1, retry_after=1),
        Fault(kind="rate_limit", times=2),
        Fault(kind="truncate", after_bytes=1000, times=1),
        Fault(kind="expired_asset", times=1),
        Fault(kind="stall", after_bytes=1000, seconds=0.5, times=1),
    ],
    ids=["5xx-once", "5xx-twice", "429-retry-after", "429-no-retry-after", "short-body-once", "expired-link-once",
         "short-stall"],
)
def test_transient_fault_is_retried_into_a_complete_archive(svc: Service, sim_state: SimulatorState, fault: Fault) -> None:
    order_id, ids = seed(sim_state, ["a.jpg", "b.jpg", "c.jpg"])
    fault.image_id = ids[1]
    sim_state.add_fault(fault)
    response, elapsed = get(svc, order_id)
    members, manifest = archive(response)
    assert sorted(members) == ["_manifest.json", "a.jpg", "b.jpg", "c.jpg"]
    assert (manifest["downloaded"], manifest["failed"], manifest["failures"]) == (3, 0, [])
    assert fault.fired == (fault.times or 1)
    if fault.retry_after:
        assert elapsed >= fault.retry_after  # Retry-After honoured, not hammered


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(kind="status", status=503), "Autoenhance kept failing (HTTP 503)"),
        (Fault(kind="rate_limit"), "Autoenhance kept failing (HTTP 429)"),
        (Fault(kind="truncate", after_bytes=1000), "after retries"),
        (Fault(kind="expired_asset"), "the asset link had expired (HTTP 403)"),
        (Fault(kind="asset_404"), "not available from the asset host (HTTP 404)"),
        (Fault(kind="redirect_loop"), "too many redirects"),
        (Fault(kind="latency", seconds=IMAGE_TIMEOUT + 1), "timed out"),
        (Fault(kind="stall", after_bytes=1000, seconds=IMAGE_TIMEOUT + 1), "timed out"),
        (Fault(kind="not_ready"), "still processing"),
        (Fault(kind="error_status", status_reason="Enhancement failed"), "Enhancement failed"),
    ],
    ids=["5xx-always", "429-always", "short-body-always", "expired-link-always", "asset-404", "redirect-loop",
         "slow-headers", "stalled-body", "processing-at-download", "error-status"],
)
def test_permanent_fault_is_reported_and_the_rest_is_served(
    svc: Service, sim_state: SimulatorState, fault: Fault, reason: str
) -> None:
    order_id, ids = seed(sim_state, ["a.jpg", "b.jpg", "c.jpg"])
    fault.image_id = ids[1]
    sim_state.add_fault(fault)
    response, _ = get(svc, order_id)
    members, manifest = archive(response)
    assert sorted(members) == ["_download_report.txt", "_manifest.json", "a.jpg", "c.jpg"]
    text = report(members)
    assert ids[1] in text and "b.jpg" in text
    assert reason in text, text
    assert [f["image_id"] for f in manifest["failures"]] == [ids[1]]
    assert (manifest["downloaded"], manifest["failed"]) == (2, 1)
    assert "Failed:          1" in text


def test_every_image_failing_is_a_422_listing_each(svc: Service, sim_state: SimulatorState) -> None:
    order_id, ids = seed(sim_state, ["a.jpg", "b.jpg"])
    sim_state.add_fault(Fault(kind="status", status=502, order_id=order_id))
    response, _ = get(svc, order_id)
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "None of the order's 2 images could be downloaded"
    assert sorted(f["image_id"] for f in body["failures"]) == sorted(ids)
    assert all("HTTP 502" in f["reason"] and f["recovery"] for f in body["failures"])


def test_image_over_max_image_bytes_is_refused_without_reading_it(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(**FAST, max_image_bytes=50_000)
    order = sim_state.seed_order(
        images=[SeedImage(name="small.jpg", size=10_000), SeedImage(name="huge.jpg", size=30_000_000)]
    )
    sim_state.reset_stats()
    response, _ = get(service, order["order_id"])
    members, _ = archive(response)
    assert sorted(members) == ["_download_report.txt", "_manifest.json", "small.jpg"]
    # refused from its Content-Length, before reading the body (the spool's own check words it differently)
    assert "image of 30000000 bytes is over the 50000 byte limit (MAX_IMAGE_BYTES)" in report(members)
    assert sim_state.stats["enhanced"] == 2  # not retried: a size limit is not transient


def test_duplicate_and_hostile_names_become_safe_unique_members(svc: Service, sim_state: SimulatorState) -> None:
    hostile = ["../../etc/passwd", "C:\\Windows\\system32\\cmd.exe", "CON", "kitchen.jpg", "Kitchen.JPG",
               "a\x00b\x1f.jpg", "", ".hidden", "évier.jpg", "_manifest.json"]
    order_id, _ = seed(sim_state, hostile)
    members, manifest = archive(get(svc, order_id)[0])
    names = [n for n in members if n not in ("_manifest.json",)]
    assert len(names) == len(hostile)
    assert len({n.casefold() for n in names}) == len(names)  # unique, case-insensitively
    for name in names:
        assert "/" not in name and "\\" not in name and ".." not in name, name
        assert not any(ord(c) < 32 for c in name), name
        assert name.rsplit(".", 1)[0].upper() not in {"CON", "PRN", "AUX", "NUL"}, name
    assert "évier.jpg" in names and "kitchen.jpg" in names and "Kitchen (2).jpg" in names
    assert sorted(f["name"] for f in manifest["files"]) == sorted(names)


def test_images_still_processing_are_reported_not_fetched(svc: Service, sim_state: SimulatorState) -> None:
    order = sim_state.seed_order(
        images=[SeedImage(name="done.jpg"), SeedImage(name="busy.jpg", status="processing")]
    )
    sim_state.reset_stats()
    members, _ = archive(get(svc, order["order_id"])[0])
    assert sorted(members) == ["_download_report.txt", "_manifest.json", "done.jpg"]
    assert "busy.jpg" in report(members) and "processing" in report(members)
    assert sim_state.stats["enhanced"] == 1


# -- order faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "detail"),
    [
        (Fault(kind="order_status", status=401), 502, "rejected this service's API key"),
        (Fault(kind="order_status", status=403), 502, "rejected this service's API key"),
        (Fault(kind="order_status", status=404), 404, "was not found on Autoenhance"),
        (Fault(kind="order_status", status=503), 502, "unavailable"),
        (Fault(kind="order_status", status=500, times=1), 200, None),
        (Fault(kind="order_not_json"), 502, "cannot read"),
        (Fault(kind="order_latency", seconds=IMAGE_TIMEOUT + 1), 502, "timed out"),
        (Fault(kind="order_payload", payload=None), 502, "not a JSON object"),
        (Fault(kind="order_payload", payload=[1, 2]), 502, "not a JSON object"),
        (Fault(kind="order_payload", payload={"images": "lots"}), 502, "'images' is not a list"),
        (Fault(kind="order_payload", payload={"name": None, "images": None}), 422, "has no images"),
        (Fault(kind="order_payload", payload={}), 422, "has no images"),
        (Fault(kind="order_payload", payload={"images": [{"image_id": None}, {}]}), 422, "could be downloaded"),
    ],
    ids=["401", "403", "404", "5xx-always", "5xx-once", "not-json", "slow", "null-body", "list-body",
         "images-not-a-list", "null-fields", "missing-fields", "images-without-ids"],
)
def test_order_fault_maps_to_a_documented_status(
    svc: Service, sim_state: SimulatorState, fault: Fault, status: int, detail: str | None
) -> None:
    order_id, _ = seed(sim_state, ["a.jpg"])
    fault.order_id = order_id
    sim_state.add_fault(fault)
    response, _ = get(svc, order_id)
    assert response.status_code == status, response.text
    if detail is None:
        archive(response)
        return
    body = response.json()
    assert detail in body["detail"], body
    assert "<html" not in response.text and TEST_KEY not in response.text  # nothing leaked from upstream


def test_connection_refused_is_a_502_at_once(start_service: Callable[..., Service]) -> None:
    service = start_service(**FAST, autoenhance_base_url=f"http://127.0.0.1:{free_port()}")
    response, elapsed = get(service, "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c")
    assert response.status_code == 502
    assert "could not be reached" in response.json()["detail"]
    assert elapsed < 5


# -- the upstream going away in the middle of a 200-image order ---------------------------------------


@pytest.fixture
def doomed_simulator() -> Iterator[tuple[str, SimulatorState, uvicorn.Server]]:
    """A simulator the test can stop for good in the middle of a batch."""
    state = SimulatorState(api_keys={TEST_KEY}, download_latency=0.01)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_simulator(state), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", state, server
    server.should_exit = True
    thread.join(10)


def test_upstream_going_away_mid_order_ends_a_valid_archive_quickly(
    doomed_simulator: tuple[str, SimulatorState, uvicorn.Server], tmp_path: Any
) -> None:
    from app import create_app
    from tests.conftest import service_settings

    url, state, server = doomed_simulator
    order_id, _ = seed(state, [f"p{i:03d}.jpg" for i in range(200)], size=20_000)
    settings = service_settings(url, tmp_path / "data", image_timeout_seconds=IMAGE_TIMEOUT, cache_ttl_seconds=0,
                                breaker_threshold=5, breaker_reset_seconds=30, max_concurrent_downloads=4)
    with serve(create_app(settings)) as service_url:
        started = time.monotonic()
        received = bytearray()
        with httpx.stream("GET", f"{service_url}/orders/{order_id}/images", timeout=BOUND + 10) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) > 40 * 20_000 and not server.should_exit:
                    server.should_exit = True  # upstream goes away for good
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    members = check_zip(bytes(received))
    manifest = json.loads(members["_manifest.json"])
    images = [n for n in members if n not in ("_manifest.json", "_download_report.txt")]
    assert 40 <= len(images) < 200
    assert manifest["downloaded"] == len(images) and manifest["failed"] == 200 - len(images)
    text = report(members)
    assert text.count("(image id ") == 200 - len(images)  # every missing image has its entry
    assert "circuit breaker open" in text  # after 5 failures the rest fail fast instead of timing out


def test_fault_probability_fires_on_a_share_of_requests() -> None:
    from simulator.faults import FaultBook

    book = FaultBook()
    never = book.add(Fault(kind="status", probability=0.0, image_id="a"))
    sometimes = book.add(Fault(kind="status", probability=0.3, image_id="b"))
    assert not any(book.take("status", image_id="a") for _ in range(200)) and never.fired == 0
    fired = sum(book.take("status", image_id="b") is not None for _ in range(2000))
    assert 450 <= fired <= 750 and sometimes.fired == fired  # 30 % give or take
    with pytest.raises(ValueError, match="probability"):
        Fault(kind="status", probability=1.5)
