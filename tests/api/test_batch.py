"""GET /orders/{id}/images end to end: the service over real HTTP against the simulator."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app import create_app
from harness.servers import free_port, serve
from simulator import Fault, SeedImage, SimulatorState
from simulator import create_app as create_simulator
from tests.conftest import Service, Sim, service_settings
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip


def seed(sim: Sim, *images: SeedImage, name: str = "12 Oak Street") -> str:
    return str(sim.state.seed_order(name=name, images=list(images))["order_id"])


def images_of(sim: Sim, order_id: str) -> list[str]:
    order = sim.state.order_json(sim.state.get_order(order_id))
    return [img["image_id"] for img in order["images"]]


EXTRAS = {"_manifest.json", "_download_report.txt"}


def get_zip(service: Service, order_id: str, **params: object) -> httpx.Response:
    with service.client() as client:
        return client.get(f"/orders/{order_id}/images", params=params)


# -- the happy path -------------------------------------------------------------------------------


def test_full_order_streams_a_valid_zip_with_exact_bytes(simulator: Sim, service: Service) -> None:
    order_id = seed(
        simulator,
        SeedImage(name="kitchen.jpg", size=700_000),
        SeedImage(name="bath.jpg", size=5_000_000),
        SeedImage(name="garden.jpg", size=1234),
    )
    response = get_zip(service, order_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["x-total-images"] == "3"
    assert "x-downloaded" not in response.headers  # not known before streaming
    assert response.headers["content-disposition"].startswith('attachment; filename="12 Oak Street.zip"')
    members = check_zip(response.content)
    assert "_download_report.txt" not in members
    manifest = json.loads(members.pop("_manifest.json"))
    assert manifest["downloaded"] == 3 and manifest["failed"] == 0
    by_id = {f["image_id"]: f["name"] for f in manifest["files"]}
    assert sorted(members) == ["bath.jpg", "garden.jpg", "kitchen.jpg"]
    for image_id in images_of(simulator, order_id):
        assert members[by_id[image_id]] == simulator.state.synthetic_bytes(image_id)


def test_options_reach_upstream_and_real_images_are_encoded(simulator: Sim, service: Service) -> None:
    sample = next(Path("simulator/sample_images").glob("*.jpg")).read_bytes()
    order_id = seed(simulator, SeedImage(name="living.jpg", data=sample))
    response = get_zip(service, order_id, format="png", quality=70, preview="false", dev_mode="true")
    assert response.status_code == 200
    members = check_zip(response.content)
    assert "living.png" in members
    assert members["living.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert simulator.state.stats["credits_spent"] == 0  # dev mode: x-dev-mode reached the API


def test_full_resolution_without_dev_mode_spends_credits(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(service_api_key="trusted")  # credits are spent for trusted callers only
    order_id = seed(simulator, SeedImage(name="a.jpg", size=1000), SeedImage(name="b.jpg", size=1000))
    with service.client(headers={"X-API-Key": "trusted"}) as client:
        assert client.get(f"/orders/{order_id}/images", params={"preview": "false"}).status_code == 200
    assert simulator.state.stats["credits_spent"] == 2  # preview=false was sent explicitly


def test_hostile_and_duplicate_names_become_safe_unique_members(simulator: Sim, service: Service) -> None:
    names = ["../../etc/passwd", "Kitchen.JPG", "kitchen.jpg", "CON", "a\x01b.jpg", None, "Küche.jpg", "..\\..\\x.jpg"]
    order_id = seed(simulator, *(SeedImage(name=n, size=100 + i) for i, n in enumerate(names)), name="Villa Ñandú/東京")
    response = get_zip(service, order_id)
    members = check_zip(response.content)
    files = sorted(set(members) - EXTRAS)
    assert len(files) == len(names)
    assert len({f.casefold() for f in files}) == len(files)
    for name in files:
        assert "/" not in name and "\\" not in name and ".." not in name
        assert name.isprintable() and name.endswith(".jpg")
    assert "passwd.jpg" in files and "_CON.jpg" in files and "Küche.jpg" in files
    disposition = response.headers["content-disposition"]
    assert "filename*=UTF-8''" in disposition and "%E6%9D%B1%E4%BA%AC" in disposition


# -- partial and total failure ------------------------------------------------------------------


def test_partial_failure_is_a_zip_with_a_report(simulator: Sim, service: Service) -> None:
    order_id = seed(
        simulator,
        SeedImage(name="ok.jpg", size=2000),
        SeedImage(name="busy.jpg", status="processing"),
        SeedImage(name="broken.jpg", status="error", status_reason="Sky replacement failed"),
        SeedImage(name="flaky.jpg", size=2000),
    )
    flaky = images_of(simulator, order_id)[3]
    simulator.state.add_fault(Fault(kind="status", image_id=flaky, status=500))
    response = get_zip(service, order_id)
    assert response.status_code == 200
    members = check_zip(response.content)
    assert sorted(set(members) - EXTRAS) == ["ok.jpg"]
    report = members["_download_report.txt"].decode()
    assert "Downloaded:      1" in report and "Failed:          3" in report
    assert "busy.jpg" in report and "still being enhanced" in report
    assert "Sky replacement failed" in report
    assert flaky in report and "HTTP 500" in report
    assert "How to recover" in report
    # the processing and errored images were reported from the order, never fetched
    assert simulator.state.stats["enhanced"] == 1 + 3  # ok once, flaky three attempts


def test_nothing_succeeded_is_422_listing_every_failure(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", status="processing"), SeedImage(name="b.jpg", size=10))
    simulator.state.add_fault(Fault(kind="not_ready", image_id=images_of(simulator, order_id)[1]))
    response = get_zip(service, order_id)
    assert response.status_code == 422
    body = response.json()
    assert "None of the order's 2 images" in body["detail"]
    assert {f["name"] for f in body["failures"]} == {"a.jpg", "b.jpg"}
    assert all(f["reason"] and f["recovery"] and f["image_id"] for f in body["failures"])


def test_empty_order_is_422(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator)
    response = get_zip(service, order_id)
    assert response.status_code == 422 and "no images" in response.json()["detail"]
    # the refused build released its single-flight claim: asking again is refused at once, not after
    # waiting out the 120 s a request gives an identical one in flight
    with httpx.Client(base_url=service.url, timeout=30) as client:
        again = client.get(f"/orders/{order_id}/images")
    assert again.status_code == 422 and "no images" in again.json()["detail"]


def test_order_over_the_image_limit_is_refused_before_downloading(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(max_images_per_order=1000)
    order_id = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=10) for i in range(1001)))
    response = get_zip(service, order_id)
    assert response.status_code == 422 and "MAX_IMAGES_PER_ORDER" in response.json()["detail"]
    assert simulator.state.stats["enhanced"] == 0


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, times=2),
        Fault(kind="rate_limit", retry_after=0.2, times=1),
        Fault(kind="rate_limit", retry_after=None, times=1),
        Fault(kind="truncate", after_bytes=1000, times=1),
        Fault(kind="expired_asset", times=1),
    ],
    ids=["503-twice", "429-retry-after", "429-bare", "truncated-body", "expired-asset"],
)
def test_transient_faults_are_retried(simulator: Sim, service: Service, fault: Fault) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=50_000))
    image_id = images_of(simulator, order_id)[0]
    fault.image_id = image_id
    simulator.state.add_fault(fault)
    response = get_zip(service, order_id)
    assert response.status_code == 200
    members = check_zip(response.content)
    assert members["a.jpg"] == simulator.state.synthetic_bytes(image_id)
    assert fault.fired == fault.times


def test_retry_after_is_honoured(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100))
    simulator.state.add_fault(Fault(kind="rate_limit", retry_after=1.0, times=1))
    started = time.monotonic()
    assert get_zip(service, order_id).status_code == 200
    assert time.monotonic() - started >= 0.9


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(simulator: Sim, service: Service, status: int) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100), SeedImage(name="b.jpg", size=100))
    bad = images_of(simulator, order_id)[0]
    simulator.state.add_fault(Fault(kind="status", image_id=bad, status=status))
    response = get_zip(service, order_id)
    assert response.status_code == 200
    report = check_zip(response.content)["_download_report.txt"].decode()
    assert f"HTTP {status}" in report
    assert simulator.state.stats["enhanced"] == 2  # one attempt each


def test_stalled_body_times_out_and_is_reported(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(image_timeout_seconds=1.5, retry_attempts=2)
    order_id = seed(simulator, SeedImage(name="ok.jpg", size=100), SeedImage(name="stuck.jpg", size=400_000))
    stuck = images_of(simulator, order_id)[1]
    simulator.state.add_fault(Fault(kind="stall", image_id=stuck, after_bytes=1000, seconds=30))
    started = time.monotonic()
    response = get_zip(service, order_id)
    assert time.monotonic() - started < 10
    report = check_zip(response.content)["_download_report.txt"].decode()
    assert "stuck.jpg" in report and "timed out" in report


def test_redirect_loop_is_reported_not_followed_forever(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="ok.jpg", size=100), SeedImage(name="loop.jpg", size=100))
    simulator.state.add_fault(Fault(kind="redirect_loop", image_id=images_of(simulator, order_id)[1]))
    report = check_zip(get_zip(service, order_id).content)["_download_report.txt"].decode()
    assert "too many redirects" in report


def test_image_over_the_size_limit_is_reported(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(max_image_bytes=50_000)
    order_id = seed(simulator, SeedImage(name="small.jpg", size=10_000), SeedImage(name="huge.jpg", size=200_000))
    report = check_zip(get_zip(service, order_id).content)["_download_report.txt"].decode()
    assert "huge.jpg" in report and "limit" in report


# -- bad input and upstream errors ---------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1234", "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6", "'; DROP TABLE--"])
def test_non_uuid_order_id_is_400_before_any_upstream_call(simulator: Sim, service: Service, bad_id: str) -> None:
    response = get_zip(service, bad_id)
    assert response.status_code == 400
    assert "UUID" in response.json()["detail"]
    assert simulator.state.stats["order_get"] == 0


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"format": "gif"}, "format"),
        ({"quality": 0}, "quality"),
        ({"quality": 91}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"preview": "maybe"}, "preview"),
    ],
)
def test_bad_options_are_422_with_a_clear_message(simulator: Sim, service: Service, params: dict, needle: str) -> None:
    response = get_zip(service, str(uuid.uuid4()), **params)
    assert response.status_code == 422
    assert needle in response.json()["detail"]
    assert simulator.state.stats["order_get"] == 0


def test_unknown_order_is_404(simulator: Sim, service: Service) -> None:
    response = get_zip(service, str(uuid.uuid4()))
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (Fault(kind="order_status", status=401), "rejected this service's API key"),
        (Fault(kind="order_status", status=403), "rejected this service's API key"),
        (Fault(kind="order_status", status=503), "unavailable"),
        (Fault(kind="order_not_json"), "cannot read"),
    ],
    ids=["401", "403", "503", "not-json"],
)
def test_order_fetch_failures_are_502_without_upstream_bodies(
    simulator: Sim, service: Service, fault: Fault, needle: str
) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=10))
    simulator.state.add_fault(fault)
    response = get_zip(service, order_id)
    assert response.status_code == 502
    body = response.json()
    assert needle in body["detail"]
    assert set(body) == {"detail"}
    assert "<" not in body["detail"] and "message" not in body["detail"]  # nothing echoed from upstream


def test_upstream_unreachable_is_502(start_service: Callable[..., Service]) -> None:
    service = start_service(autoenhance_base_url="http://127.0.0.1:9", retry_attempts=2)
    response = get_zip(service, str(uuid.uuid4()))
    assert response.status_code == 502 and "could not be reached" in response.json()["detail"]


def test_order_with_renamed_and_missing_fields(simulator: Sim, service: Service) -> None:
    """Older payloads say `id`/`name`; some entries carry no id at all."""
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100), SeedImage(name="b.jpg", size=200))
    record = simulator.state.get_order(order_id)
    original = simulator.state.order_json

    def legacy_json(order: object, *args: object) -> dict:
        data = original(order, *args)  # type: ignore[arg-type]
        if order is record:
            images = []
            for img in data["images"]:
                images.append({"id": img["image_id"], "name": img["image_name"], "status": img["status"]})
            data["images"] = [*images, {"image_name": "ghost.jpg"}]
        return data

    simulator.state.order_json = legacy_json  # type: ignore[method-assign]
    response = get_zip(service, order_id)
    members = check_zip(response.content)
    assert {"a.jpg", "b.jpg"} <= set(members)
    assert "without an id" in members["_download_report.txt"].decode()


# -- security --------------------------------------------------------------------------------------


def test_api_key_never_reaches_another_host(sim_state: SimulatorState, tmp_path: Path) -> None:
    """Assets served from another origin than the API get neither x-api-key nor x-dev-mode."""
    port = free_port()
    sim_state.asset_base_url = f"http://localhost:{port}"
    with serve(create_simulator(sim_state), port=port) as sim_url:
        order_id = str(sim_state.seed_order(name="x", images=[SeedImage(name="a.jpg", size=100)])["order_id"])
        settings = service_settings(sim_url, tmp_path, allowed_asset_hosts=[f"localhost:{port}"])  # plain http
        with serve(create_app(settings)) as url:
            response = httpx.get(f"{url}/orders/{order_id}/images", params={"dev_mode": "true"}, timeout=30)
    assert response.status_code == 200
    assert sim_state.stats["asset"] == 1
    assert sim_state.stats["asset_requests_with_api_key"] == 0


def test_service_api_key_guards_batch_routes_but_not_health(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(service_api_key="s3cret")
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100))
    with service.client() as client:
        assert client.get(f"/orders/{order_id}/images").status_code == 401
        assert client.get(f"/orders/{order_id}/images", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get(f"/orders/{order_id}/images", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/health").status_code == 200
    assert simulator.state.stats["order_get"] == 1


def test_security_headers_and_request_id_on_every_response(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100))
    with service.client() as client:
        for response in (
            client.get(f"/orders/{order_id}/images"),
            client.get("/health"),
            client.get("/orders/nope/images"),
            client.get("/openapi.json"),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"]
            assert len(response.headers["x-request-id"]) >= 16
        echoed = client.get("/health", headers={"X-Request-ID": "trace-123"})
        assert echoed.headers["x-request-id"] == "trace-123"


def test_cors_only_for_allowed_origins(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(allowed_origins=["https://app.example"])
    with service.client() as client:
        ok = client.get("/health", headers={"Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_health_reports_live_mode(service: Service) -> None:
    with service.client() as client:
        body = client.get("/health").json()
        assert body["status"] == "ok" and body["mode"] == "live" and body["api_key_configured"] is True
        assert client.head("/health").status_code == 200


def test_stats_count_what_was_served(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=100), SeedImage(name="b.jpg", status="processing"))
    get_zip(service, order_id)
    with service.client() as client:
        stats = client.get("/api/stats").json()
    assert stats["zips_served"] == 1 and stats["partial_zips"] == 1
    assert stats["images_downloaded"] == 1 and stats["images_failed"] == 1
    assert stats["downloads"]["in_flight"] == 0
    # the job door's images land in the same counters, and an all-failed answer counts too
    failing = seed(simulator, SeedImage(name="c.jpg", status="error"))
    with service.client() as client:
        job = client.post(f"/orders/{order_id}/jobs").json()
        deadline = time.monotonic() + 10
        while client.get(job["status_url"]).json()["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(f"/orders/{failing}/images").status_code == 422
        stats = client.get("/api/stats").json()
    assert stats["images_downloaded"] == 2 and stats["images_failed"] == 3


# -- streaming, back-pressure, disconnects -------------------------------------------------------


def test_bytes_flow_before_the_last_image_is_downloaded(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=200_000) for i in range(6)))
    slow = images_of(simulator, order_id)[5]
    simulator.state.add_fault(Fault(kind="latency", image_id=slow, seconds=3))
    with service.client() as client, client.stream("GET", f"/orders/{order_id}/images") as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        assert first.startswith(b"PK\x03\x04")
        assert simulator.state.stats["asset"] < 6  # the slow image has not been served yet
        rest = first + b"".join(chunks)
    assert len(set(check_zip(rest)) - EXTRAS) == 6


def test_concurrency_is_bounded_per_order(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(max_concurrent_downloads=3)
    simulator.state.configure(download_latency=0.1)
    order_id = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=1000) for i in range(15)))
    assert get_zip(service, order_id).status_code == 200
    assert simulator.state.stats["peak_concurrent_downloads"] == 3


def test_disconnect_cancels_downloads_and_leaves_no_spool_files(simulator: Sim,
                                                                start_service: Callable[..., Service]) -> None:
    service = start_service(spool_memory_bytes=0)  # every image spooled on disk
    simulator.state.configure(download_latency=0.2)
    order_id = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=300_000) for i in range(60)))
    with service.client() as client:
        with client.stream("GET", f"/orders/{order_id}/images") as response:
            assert response.status_code == 200
            next(response.iter_raw())
            assert open_spool_files(service.settings.spool_dir) > 0  # downloads in progress, spooled on disk
        deadline = time.monotonic() + 5
        while client.get("/api/stats").json()["downloads"]["active_batches"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.get("/api/stats").json()["downloads"]
    assert stats["active_batches"] == 0 and stats["in_flight"] == 0
    assert open_spool_files(service.settings.spool_dir) == 0
    assert list(service.settings.spool_dir.iterdir()) == []
    fetched = simulator.state.stats["enhanced"]
    time.sleep(0.6)
    assert simulator.state.stats["enhanced"] == fetched < 60  # nothing more is fetched after the hang-up


# -- cache ---------------------------------------------------------------------------------------


def test_complete_archive_is_cached_and_served_as_a_file(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=300_000), SeedImage(name="b.jpg", size=100_000))
    first = get_zip(service, order_id, format="png")
    assert first.headers["x-cache"] == "miss"
    fetched = simulator.state.stats["enhanced"]
    second = get_zip(service, order_id, format="png")
    assert second.status_code == 200 and second.headers["x-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["content-length"] == str(len(first.content))
    assert (second.headers["x-downloaded"], second.headers["x-failed"], second.headers["x-total-images"]) == (
        "2",
        "0",
        "2",
    )
    assert simulator.state.stats["enhanced"] == fetched  # no upstream image call
    with service.client() as client:
        ranged = client.get(f"/orders/{order_id}/images", params={"format": "png"}, headers={"Range": "bytes=10-99"})
    assert ranged.status_code == 206 and ranged.content == first.content[10:100]
    other_options = get_zip(service, order_id, format="webp")
    assert other_options.headers["x-cache"] == "miss"


def test_partial_archive_is_never_cached(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=1000), SeedImage(name="b.jpg", size=1000))
    flaky = images_of(simulator, order_id)[1]
    simulator.state.add_fault(Fault(kind="status", image_id=flaky, status=500, times=3))
    first = get_zip(service, order_id)
    assert "_download_report.txt" in check_zip(first.content)
    second = get_zip(service, order_id)  # the fault is spent: a real retry now succeeds
    assert second.headers["x-cache"] == "miss"
    assert "_download_report.txt" not in check_zip(second.content)


def test_cache_misses_when_the_order_changes(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=1000))
    get_zip(service, order_id)
    simulator.state.rename_order(order_id, "Renamed")  # bumps last_updated_at
    assert get_zip(service, order_id).headers["x-cache"] == "miss"


def test_cache_respects_its_byte_budget(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(cache_max_bytes=250_000)
    first = seed(simulator, SeedImage(name="a.jpg", size=100_000))
    second = seed(simulator, SeedImage(name="b.jpg", size=100_000))
    third = seed(simulator, SeedImage(name="c.jpg", size=100_000))
    for order_id in (first, second, third):
        get_zip(service, order_id)
    assert service.settings.cache_dir.exists()
    cached = list(service.settings.cache_dir.glob("*.zip"))
    assert len(cached) == 2 and sum(p.stat().st_size for p in cached) <= 250_000
    assert get_zip(service, first).headers["x-cache"] == "miss"  # least recently used went first
    assert get_zip(service, third).headers["x-cache"] == "hit"


def test_cache_disabled_by_ttl_zero(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(cache_ttl_seconds=0)
    order_id = seed(simulator, SeedImage(name="a.jpg", size=1000))
    get_zip(service, order_id)
    assert get_zip(service, order_id).headers["x-cache"] == "miss"


def test_zip_is_readable_as_stream_by_zipfile(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=10_000))
    data = get_zip(service, order_id).content
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist()[0] == "a.jpg"
        assert zf.infolist()[0].file_size == 10_000


@pytest.mark.heavy
def test_small_order_is_not_stuck_behind_a_big_one(simulator: Sim, start_service: Callable[..., Service]) -> None:
    """With the global budget saturated by a big order, a 1-image order gets the next free slot."""
    import threading

    service = start_service(max_global_downloads=2, max_concurrent_downloads=5)
    simulator.state.configure(download_latency=0.3)
    big = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=1000) for i in range(30)))
    small = seed(simulator, SeedImage(name="solo.jpg", size=1000))
    big_done = threading.Event()

    def fetch_big() -> None:
        get_zip(service, big)
        big_done.set()

    worker = threading.Thread(target=fetch_big)
    worker.start()
    time.sleep(0.5)  # the big order now holds the whole budget, with its queue waiting
    started = time.monotonic()
    response = get_zip(service, small)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert not big_done.is_set(), "the big order finished first: the test proved nothing"
    assert elapsed < 3.0  # about one slot turnover (0.3 s) plus its own download, not 30 x 0.3 / 2 = 4.5 s
    worker.join()


def test_hangup_before_the_first_image_stops_the_downloads(simulator: Sim, service: Service) -> None:
    """The response is held until an image succeeds; a caller leaving meanwhile frees everything."""
    order_id = seed(simulator, *(SeedImage(name=f"{i}.jpg", size=1000) for i in range(20)))
    simulator.state.add_fault(Fault(kind="latency", seconds=2.0))
    with pytest.raises(httpx.ReadTimeout), service.client(timeout=0.5) as client:
        client.get(f"/orders/{order_id}/images")
    with service.client() as client:
        deadline = time.monotonic() + 1.0  # well before the 2 s upstream latency ends
        while client.get("/api/stats").json()["downloads"]["active_batches"] and time.monotonic() < deadline:
            time.sleep(0.05)
        downloads = client.get("/api/stats").json()["downloads"]
    assert downloads["active_batches"] == 0 and downloads["in_flight"] == 0 and downloads["waiting"] == 0
    started = simulator.state.stats["enhanced"]
    assert started <= 5  # only the first wave of the order's five slots ever started
    time.sleep(2.5)
    assert simulator.state.stats["enhanced"] == started


def test_total_images_header_on_the_all_failed_answer(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", status="processing"), SeedImage(name="b.jpg", status="error"))
    response = get_zip(service, order_id)
    assert response.status_code == 422
    assert response.headers["x-total-images"] == "2"
