"""Inbound rate limiting per caller: 429 + Retry-After over RATE_LIMIT, in memory and on a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from app.api.ratelimit import caller_identity
from simulator import SeedImage, SimulatorState
from tests.conftest import Service
from tests.support.cluster import REDIS_URL


def _order(sim_state: SimulatorState) -> str:
    return str(sim_state.seed_order(images=[SeedImage(name="a.jpg", size=2000)])["order_id"])


def _exhaust(service: Service, path: str, allowed: int, headers: dict[str, str] | None = None) -> None:
    with service.client(headers=headers or {}) as client:
        for n in range(allowed):
            assert client.get(path).status_code != 429, f"request {n + 1} of {allowed} was refused"
        refused = client.get(path)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Too many requests" in refused.json()["detail"]
    assert refused.headers["x-content-type-options"] == "nosniff"  # still inside the security headers


def test_caller_over_the_limit_gets_429_with_retry_after(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(rate_limit="3/minute")
    order_id = _order(sim_state)
    calls_before = sim_state.stats["order_get"]
    _exhaust(service, f"/orders/{order_id}/images", 3)
    assert sim_state.stats["order_get"] == calls_before + 3  # the refused request cost no upstream call
    with service.client() as client:
        assert client.get("/health").status_code == 200  # uptime monitors are never limited
        assert client.get("/").status_code == 200
        assert client.get("/jobs/unknown").status_code == 404  # status polls cost no upstream call
        assert client.post(f"/orders/{order_id}/jobs").status_code == 429  # job creation shares the limit


def test_callers_are_told_apart_by_api_key(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(rate_limit="2/minute", service_api_key="the-service-key")
    order_id = _order(sim_state)
    path = f"/orders/{order_id}/images"
    _exhaust(service, path, 2, {"X-API-Key": "the-service-key"})
    with service.client() as client:  # no key: limited by address, its own bucket (and refused by auth)
        assert client.get(path).status_code == 401


def test_made_up_keys_do_not_open_fresh_buckets(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(rate_limit="2/minute", service_api_key="the-service-key")
    order_id = _order(sim_state)
    with service.client() as client:
        codes = [client.get(f"/orders/{order_id}/images", headers={"X-API-Key": f"guess-{n}"}).status_code
                 for n in range(3)]
    assert codes == [401, 401, 429]  # counted against the address, whatever key is sent
    assert sim_state.stats["order_get"] == 0


def test_the_versioned_paths_and_thumbnails_are_limited_too(start_service: Callable[..., Service]) -> None:
    """The page calls /v1/...: the limit must not apply to the unversioned aliases only."""
    service = start_service(rate_limit="3/minute")
    with service.client() as client:
        codes = [client.get("/v1/orders/not-a-uuid/images").status_code for _ in range(3)]
        codes.append(client.get("/v1/images/not-an-image!/thumbnail").status_code)
        codes.append(client.get("/orders/not-a-uuid/photos").status_code)
    assert codes == [400, 400, 400, 429, 429]


def test_empty_rate_limit_disables_it(start_service: Callable[..., Service]) -> None:
    service = start_service(rate_limit="")
    with service.client() as client:
        assert all(client.get("/orders/not-a-uuid/images").status_code == 400 for _ in range(30))


def test_bad_rate_limit_fails_at_start_up(start_service: Callable[..., Service]) -> None:
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        start_service(rate_limit="lots per hour")


def test_the_key_is_hashed_never_stored() -> None:
    scope = {"headers": [(b"x-api-key", b"secret-key-123")], "client": ("10.0.0.1", 1234)}
    identity = caller_identity(scope, b"secret-key-123")
    assert identity.startswith("key:") and "secret-key-123" not in identity
    assert caller_identity(scope, b"another-key") == "ip:10.0.0.1"  # a key the service does not accept
    assert caller_identity(scope, None) == "ip:10.0.0.1"  # no SERVICE_API_KEY: no keys to tell apart
    assert caller_identity({"headers": [], "client": ("10.0.0.1", 1234)}, b"k") == "ip:10.0.0.1"


def test_redis_storage_is_shared_between_service_instances(
    start_service: Callable[..., Service], sim_state: SimulatorState, redis_prefix: str
) -> None:
    prefix = redis_prefix
    settings = {"rate_limit": "4/minute", "redis_url": REDIS_URL, "redis_key_prefix": prefix}
    first = start_service(**settings)
    order_id = _order(sim_state)
    path = f"/orders/{order_id}/images"
    with first.client() as one:
        for _ in range(2):
            assert one.get(path).status_code == 200
    with redis.Redis.from_url(REDIS_URL) as client:
        assert any(True for _ in client.scan_iter(match=f"{prefix}*"))  # the counters are in Redis
    second = start_service(**settings, data_dir=first.settings.data_dir.parent / "data2")
    _exhaust(second, path, 2)  # the second process saw the first one's two requests


def test_redis_down_lets_requests_through_and_logs_it(
    start_service: Callable[..., Service], sim_state: SimulatorState, capfd: pytest.CaptureFixture[str]
) -> None:
    from harness.servers import free_port

    service = start_service(rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    order_id = _order(sim_state)
    with service.client() as client:
        assert [client.get(f"/orders/{order_id}/images").status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limiter storage failed; request let through" in capfd.readouterr().err


def test_versioned_paths_and_ready_are_limited(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(rate_limit="5/minute")
    order_id = _order(sim_state)
    _exhaust(service, f"/v1/orders/{order_id}/images", 5)
    with service.client() as client:  # one bucket per caller, whatever the alias
        assert client.get(f"/orders/{order_id}/images").status_code == 429
        assert client.post(f"/v1/orders/{order_id}/jobs").status_code == 429
        assert client.post("/v1/api/create-sample-order").status_code == 429
        assert client.get("/health").status_code == 200
    _exhaust(start_service(rate_limit="3/minute"), "/ready", 3)  # each /ready asks Autoenhance with our key


def test_guessing_credentials_is_limited_on_every_route(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(rate_limit="4/minute", service_api_key="the-service-key", admin_token="the-admin")
    with service.client() as client:
        codes = [client.get(f"/v1/jobs/job-{n}", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(5)]
        assert codes == [401, 401, 401, 401, 429]
        assert client.post("/v1/api/create-sample-order", headers={"X-Admin-Token": "guess"}).status_code == 429
        # a caller with the right key polls freely: its valid requests never count as guesses
        polls = [client.get("/v1/jobs/unknown", headers={"X-API-Key": "the-service-key"}).status_code
                 for _ in range(8)]
    assert polls == [404] * 8
    assert not sim_state.orders  # the guesser created nothing
