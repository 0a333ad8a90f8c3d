"""GET /metrics over real HTTP, after real traffic to the service and the simulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.ops.metrics import upstream_endpoint
from simulator import Fault, SeedImage
from tests.conftest import Service, Sim

P = "autoenhance_batch_"


def scrape(service: Service) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample as {(name, labels): value}."""
    response = httpx.get(f"{service.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((P + name, frozenset(labels.items())), 0.0)


def seed(sim: Sim, *images: SeedImage) -> str:
    return str(sim.state.seed_order(name="Metrics", images=list(images))["order_id"])


def image_ids(sim: Sim, order_id: str) -> list[str]:
    return [img["image_id"] for img in sim.state.order_json(sim.state.get_order(order_id))["images"]]


def test_requests_are_counted_by_route_template_with_first_byte_apart_from_stream_time(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    simulator.state.download_latency = 0.3
    service = start_service(max_concurrent_downloads=1)  # one image at a time: the stream lasts ~3x the wait
    order_id = seed(simulator, *(SeedImage(name=f"{n}.jpg", size=50_000) for n in range(3)))
    with service.client() as client:
        body = client.get(f"/v1/orders/{order_id}/images").content
        assert client.get("/v1/orders/not-a-uuid/images").status_code == 400
        assert client.get("/no/such/path").status_code == 404
    samples = scrape(service)
    route = {"method": "GET", "route": "/v1/orders/{order_id}/images", "status": "200"}
    assert value(samples, "http_requests_total", **route) == 1
    assert value(samples, "http_requests_total", **(route | {"status": "400"})) == 1
    assert value(samples, "http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    first_byte = value(samples, "http_time_to_first_byte_seconds_sum", **route)
    total = value(samples, "http_request_duration_seconds_sum", **route)
    assert value(samples, "http_time_to_first_byte_seconds_count", **route) == 1
    assert 0.25 < first_byte < total  # waited for the first image, then streamed the other two
    assert total - first_byte > 0.4
    assert value(samples, "bytes_sent_total") == len(body)
    assert value(samples, "images_downloaded_total") == 3
    text = httpx.get(f"{service.url}/metrics").text
    assert order_id not in text and "not-a-uuid" not in text  # labels are templates, never raw paths


def test_upstream_calls_failures_and_cache_are_counted(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(retry_attempts=2)
    order_id = seed(simulator, SeedImage(name="a.jpg", size=1000), SeedImage(name="b.jpg", size=1000))
    broken = image_ids(simulator, order_id)[1]
    simulator.state.add_fault(Fault(kind="status", image_id=broken, status=500))
    with service.client() as client:
        assert client.get(f"/orders/{order_id}/images").status_code == 200  # the unversioned alias
    simulator.state.clear_faults()
    with service.client() as client:
        assert client.get(f"/v1/orders/{order_id}/images").status_code == 200  # complete: fills the cache
        hit = client.get(f"/v1/orders/{order_id}/images")
    assert hit.headers["x-cache"] == "hit"
    samples = scrape(service)
    enhanced = {"method": "GET", "endpoint": "/v3/images/{id}/enhanced"}
    assert value(samples, "upstream_request_duration_seconds_count", **enhanced, outcome="500") == 2  # both attempts
    assert value(samples, "upstream_request_duration_seconds_count", **enhanced, outcome="302") == 3
    assert value(samples, "upstream_request_duration_seconds_count", method="GET", endpoint="asset", outcome="200") == 3
    assert (
        value(
            samples, "upstream_request_duration_seconds_count", method="GET", endpoint="/v3/orders/{id}", outcome="200"
        )
        == 3
    )
    assert value(samples, "images_failed_total") == 1
    assert value(samples, "images_downloaded_total") == 3
    assert value(samples, "partial_zips_total") == 1
    assert value(samples, "cache_hits_total") == 1
    assert value(samples, "cache_misses_total") >= 1
    assert value(samples, "cache_bytes") > 0
    # the alias and the versioned path are told apart, so alias traffic can be watched before retiring it
    assert value(samples, "http_requests_total", method="GET", route="/orders/{order_id}/images", status="200") == 1


def test_upstream_outage_is_counted_as_connection_errors(start_service: Callable[..., Service]) -> None:
    from harness.servers import free_port

    service = start_service(autoenhance_base_url=f"http://127.0.0.1:{free_port()}", retry_attempts=2)
    with service.client() as client:
        assert client.get("/v1/orders/7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c/images").status_code == 502
    samples = scrape(service)
    assert (
        value(
            samples,
            "upstream_request_duration_seconds_count",
            method="GET",
            endpoint="/v3/orders/{id}",
            outcome="connection_error",
        )
        == 2
    )


def test_budget_in_flight_and_jobs_by_status(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(max_global_downloads=7)
    simulator.state.download_latency = 1.0
    order_id = seed(simulator, *(SeedImage(name=f"{n}.jpg", size=1000) for n in range(4)))
    assert value(scrape(service), "download_budget") == 7
    done = threading.Event()

    def slow_download() -> None:
        with service.client() as client:
            client.get(f"/v1/orders/{order_id}/images")
        done.set()

    thread = threading.Thread(target=slow_download)
    thread.start()
    try:
        in_flight = 0.0
        deadline = time.monotonic() + 10
        while in_flight == 0 and time.monotonic() < deadline and not done.is_set():
            in_flight = value(scrape(service), "downloads_in_flight")
            time.sleep(0.05)
        assert in_flight >= 1
        assert value(scrape(service), "active_batches") == 1
    finally:
        thread.join(30)
    simulator.state.download_latency = 0.0
    with service.client() as client:
        job = client.post(f"/v1/orders/{order_id}/jobs").json()
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job['job_id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    samples = scrape(service)
    assert value(samples, "jobs", status="completed") == 1
    assert value(samples, "jobs", status="running") == 0
    assert value(samples, "downloads_in_flight") == 0


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api.autoenhance.ai/v3/orders/abc", "/v3/orders/{id}"),
        ("https://api.autoenhance.ai/v3/orders/", "/v3/orders/"),
        ("https://api.autoenhance.ai//v3/images/x-1/enhanced", "/v3/images/{id}/enhanced"),
        ("https://assets.example/bucket/x-1.jpg?sig=1", "asset"),
        ("https://api.autoenhance.ai/_assets/x-1", "asset"),
    ],
)
def test_upstream_endpoint_labels_are_bounded(url: str, endpoint: str) -> None:
    assert upstream_endpoint(httpx.URL(url), "api.autoenhance.ai") == endpoint


def test_metrics_token_guards_the_scrape(start_service: Callable[..., Service]) -> None:
    service = start_service(metrics_token="scrape-secret")
    url = f"{service.url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-secret"}):
        refused = httpx.get(url, headers=headers, timeout=10)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "scrape-secret" not in refused.text
    allowed = httpx.get(url, headers={"Authorization": "Bearer scrape-secret"}, timeout=10)
    assert allowed.status_code == 200 and P + "http_requests_total" in allowed.text
    assert httpx.get(f"{service.url}/health", timeout=10).status_code == 200  # probes stay open
