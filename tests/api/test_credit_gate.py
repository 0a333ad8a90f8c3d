"""Credits are spent only for callers the operator trusts.

Full-resolution downloads (preview=false, the mls set) cost the operator's Autoenhance credits.
With default settings an anonymous caller gets a 403 saying how to enable them, on every door
that downloads (the streamed ZIP, its HEAD, jobs, watches), before any upstream call; previews,
the free sets and dev mode stay open. A valid SERVICE_API_KEY or ALLOW_ANONYMOUS_CREDITS=true
lets them through; demo mode (the embedded simulator, which charges no one) is open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app import create_app
from app.config import DEMO_ORDER_ID, Settings
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.jobs_helpers import poll, seed
from tests.support.zipcheck import check_zip

PAID = [
    {"preview": "false"},
    {"sets": "mls"},
    {"sets": "web,mls", "preview": "true"},
    {"sets": "full,original", "preview": "false"},
]
FREE = [
    {},
    {"preview": "true", "sets": "full,web,original"},
    {"preview": "false", "dev_mode": "true"},
    {"sets": "mls", "dev_mode": "true"},
]


def _upstream_calls(simulator: Sim) -> list[dict[str, str]]:
    return [r for r in simulator.state.request_log if r["path"].startswith("/v3/")]


@pytest.mark.parametrize("params", PAID)
def test_anonymous_credit_spending_is_refused_on_every_door_before_any_upstream_call(
    simulator: Sim, start_service: Callable[..., Service], params: dict[str, str]
) -> None:
    service = start_service(autoenhance_webhook_token="hook-token")
    order_id = seed(simulator, SeedImage(name="front.jpg"))
    simulator.state.request_log.clear()
    with service.client() as client:
        for method, path in [
            ("GET", f"/orders/{order_id}/images"),
            ("GET", f"/v1/orders/{order_id}/images"),
            ("HEAD", f"/orders/{order_id}/images"),
            ("POST", f"/orders/{order_id}/jobs"),
            ("POST", f"/v1/orders/{order_id}/watch"),
        ]:
            response = client.request(method, path, params=params)
            assert response.status_code == 403, (method, path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            if method != "HEAD":
                detail = response.json()["detail"]
                assert "credits" in detail and "ALLOW_ANONYMOUS_CREDITS=true" in detail and "SERVICE_API_KEY" in detail
        priced = client.get(f"/orders/{order_id}/photos", params=params)  # the page asks before downloading
        assert priced.status_code == 200
        assert "ALLOW_ANONYMOUS_CREDITS" in priced.json()["cost"]["refused"]
    assert [r["path"] for r in _upstream_calls(simulator)] == [f"/v3/orders/{order_id}"]  # the /photos look-up only
    assert simulator.state.stats["credits_spent"] == 0


def test_free_downloads_stay_open_to_anonymous_callers(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service()
    order_id = seed(simulator, SeedImage(name="front.jpg"))
    with service.client() as client:
        for params in FREE:
            response = client.get(f"/orders/{order_id}/images", params=params)
            assert response.status_code == 200, (params, response.text)
        job = client.post(f"/orders/{order_id}/jobs", params={"sets": "web,original"})
        assert job.status_code == 202
        poll(client, job.json()["job_id"], lambda s: s["status"] == "completed")
        assert client.get(f"/orders/{order_id}/photos").json()["cost"]["refused"] is None
    assert simulator.state.stats["credits_spent"] == 0


def test_a_valid_service_key_may_spend_credits(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(service_api_key="the-key")
    order_id = seed(simulator, SeedImage(name="front.jpg"))
    with service.client() as client:
        refused = client.get(f"/orders/{order_id}/images", params={"preview": "false"})
        assert refused.status_code == 401  # without the key nothing is open
        paid = client.get(f"/orders/{order_id}/images", params={"preview": "false"}, headers={"X-API-Key": "the-key"})
        assert paid.status_code == 200
        job = client.post(f"/orders/{order_id}/jobs", params={"sets": "mls"}, headers={"X-API-Key": "the-key"})
        assert job.status_code == 202
    assert simulator.state.stats["credits_spent"] == 1  # one photo, charged once


def test_allow_anonymous_credits_lets_anyone_spend_them(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(allow_anonymous_credits=True)
    order_id = seed(simulator, SeedImage(name="front.jpg"))
    with service.client() as client:
        assert client.get(f"/orders/{order_id}/images", params={"sets": "mls"}).status_code == 200
    assert simulator.state.stats["credits_spent"] == 1


def test_demo_mode_spends_no_ones_credits_so_full_resolution_stays_open(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, autoenhance_api_key=None, data_dir=tmp_path, log_level="WARNING")  # type: ignore[call-arg]
    with serve(create_app(settings)) as url:
        response = httpx.get(f"{url}/orders/{DEMO_ORDER_ID}/images", params={"sets": "mls"}, timeout=120)
    assert response.status_code == 200
    assert any(name.startswith("mls/") for name in check_zip(response.content))
