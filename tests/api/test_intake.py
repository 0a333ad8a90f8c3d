"""Credentials and sizes before bodies; bodies kept to a limit and a pace (raw sockets, real server)."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from harness import raw_http
from simulator import SeedImage, SimulatorState
from tests.conftest import Service

HUGE = 100 * 1024 * 1024


def _order(sim_state: SimulatorState) -> str:
    return str(sim_state.seed_order(images=[SeedImage(name="a.jpg", size=2000)])["order_id"])


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/webhooks/autoenhance", {"Authorization": "wrong"}, 403),
        ("/v1/webhooks/autoenhance", {}, 401),
        ("/v1/orders/{order}/jobs", {"X-API-Key": "wrong"}, 401),
        ("/v1/orders/{order}/watch", {}, 401),
        ("/api/create-order", {"Content-Type": "multipart/form-data; boundary=x"}, 401),
        ("/v1/api/create-sample-order", {"X-Admin-Token": "wrong"}, 401),
    ],
)
def test_wrong_credentials_are_refused_before_the_body(
    start_service: Callable[..., Service], sim_state: SimulatorState, path: str, headers: dict[str, str], status: int
) -> None:
    """A 100 MB body is announced and never sent: the refusal must come from the headers alone."""
    service = start_service(
        service_api_key="the-key", admin_token="the-admin", autoenhance_webhook_token="the-token", rate_limit=""
    )
    path = path.format(order=_order(sim_state))
    answer = raw_http.request(service.url, "POST", path, headers | {"Content-Length": str(HUGE)}, timeout=5)
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json" and answer.detail()
    assert answer.headers["connection"] == "close"  # the unread body is not waited for
    assert sim_state.stats["order_get"] == 0


def test_a_malformed_body_does_not_answer_before_the_token(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(service_api_key="the-key", autoenhance_webhook_token="the-token")
    with service.client() as client:
        hook = client.post("/webhooks/autoenhance", content=b"{not json", headers={"Authorization": "wrong"})
        job = client.post(f"/v1/orders/{_order(sim_state)}/jobs", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert (hook.status_code, job.status_code) == (403, 401)


@pytest.mark.parametrize(
    ("path", "headers", "limit"),
    [
        ("/v1/orders/{order}/jobs", {"X-API-Key": "the-key"}, "16384 byte limit"),
        ("/webhooks/autoenhance", {"Authorization": "the-token"}, "65536 byte limit"),
        ("/api/create-order", {"X-Admin-Token": "the-admin"}, "MAX_UPLOAD_FILES"),
        ("/health", {}, "16384 byte limit"),
    ],
)
def test_an_oversized_content_length_is_413_at_once(
    start_service: Callable[..., Service], sim_state: SimulatorState, path: str, headers: dict[str, str], limit: str
) -> None:
    service = start_service(
        service_api_key="the-key", admin_token="the-admin", autoenhance_webhook_token="the-token", rate_limit=""
    )
    path = path.format(order=_order(sim_state))
    answer = raw_http.request(service.url, "POST", path, headers | {"Content-Length": str(20 * HUGE)}, timeout=5)
    assert answer.status == 413, answer
    assert limit in answer.detail()


def test_a_body_without_length_is_cut_at_the_limit(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(service_api_key="the-key", rate_limit="")
    piece = b"1000\r\n" + b" " * 4096 + b"\r\n"  # 4 KiB chunks of a JSON body that never ends
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answer = raw_http.request(
        service.url,
        "POST",
        f"/v1/orders/{_order(sim_state)}/jobs",
        {"X-API-Key": "the-key", "Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        [piece] * 25_000,  # 100 MB if the server kept reading
        timeout=10,
    )
    assert answer.status == 413, answer
    assert "16384 byte limit" in answer.detail()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024  # KiB: not 100 MB


def test_a_trickling_body_is_cut_with_408(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(service_api_key="the-key", body_timeout_seconds=1.0, rate_limit="")
    answer = raw_http.request(
        service.url,
        "POST",
        f"/v1/orders/{_order(sim_state)}/jobs",
        {"X-API-Key": "the-key", "Content-Length": "200", "Content-Type": "application/json"},
        [b" "] * 200,  # one byte every 0.25 s: 50 s if the server waited for it
        pause=0.25,
        timeout=15,
    )
    assert answer.status == 408, answer
    assert "too slowly" in answer.detail()
    assert answer.seconds < 8


def test_a_silent_body_is_cut_with_408(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(service_api_key="the-key", body_timeout_seconds=1.0, rate_limit="")
    answer = raw_http.request(
        service.url,
        "POST",
        f"/v1/orders/{_order(sim_state)}/jobs",
        {"X-API-Key": "the-key", "Content-Length": "20", "Content-Type": "application/json"},
        [b"{"],  # then nothing
        timeout=10,
    )
    assert answer.status == 408, answer
    assert answer.seconds < 5


def test_good_requests_still_pass(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(service_api_key="the-key", webhook_secret=None)
    with service.client(headers={"X-API-Key": "the-key"}) as client:
        created = client.post(f"/v1/orders/{_order(sim_state)}/jobs", json={})
    assert created.status_code == 202, created.text
