"""The circuit breaker: repeated upstream failures open it (503 + Retry-After at once), it half-opens
after BREAKER_RESET_SECONDS to probe, and closes when upstream is back. Busy (429) or definite
answers (404) never open it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from app.core.upstream.breaker import CircuitOpen, UpstreamGuard, is_failure
from app.core.upstream.client import Retryable
from simulator import Fault, SeedImage, SimulatorState
from tests.conftest import Service

SETTINGS = {
    "breaker_threshold": 3,
    "breaker_reset_seconds": 1.0,
    "retry_attempts": 1,
    "cache_ttl_seconds": 0,
    "image_timeout_seconds": 3,
    "order_timeout_seconds": 3,
}


def test_opens_fails_fast_half_opens_and_closes(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(**SETTINGS)
    order = sim_state.seed_order(images=[SeedImage(name="a.jpg")])
    url = f"/orders/{order['order_id']}/images"
    sim_state.add_fault(Fault(kind="order_status", status=503, order_id=order["order_id"]))
    with service.client() as client:
        for _ in range(3):  # three failures in a row: 502 each, and the breaker opens on the third
            assert client.get(url).status_code == 502
        calls = sim_state.stats["order_get"]
        started = time.monotonic()
        response = client.get(url)
        assert time.monotonic() - started < 2.0  # at once: no upstream call, no 3 s timeout
        assert response.status_code == 503
        assert 1 <= int(response.headers["Retry-After"]) <= 1
        assert "failing repeatedly" in response.json()["detail"]
        assert sim_state.stats["order_get"] == calls  # upstream was left alone
        assert client.get("/api/stats").json()["breaker"] == "opened"  # operators can see it
        # upstream recovers; after the reset time the breaker half-opens and a probe goes through
        sim_state.clear_faults()
        time.sleep(1.1)
        response = client.get(url)
        assert response.status_code == 200
        assert sim_state.stats["order_get"] == calls + 1
        guard = service.app.state.services.client.guard
        assert guard.opened == 1
        assert client.get(url).status_code == 200  # closed: business as usual
        assert client.get("/api/stats").json()["breaker"] == "closed"


def test_a_failed_probe_opens_it_again(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    service = start_service(**SETTINGS)
    order = sim_state.seed_order(images=[SeedImage(name="a.jpg")])
    url = f"/orders/{order['order_id']}/images"
    sim_state.add_fault(Fault(kind="order_status", status=500, order_id=order["order_id"]))
    with service.client() as client:
        for _ in range(3):
            client.get(url)
        assert client.get(url).status_code == 503
        time.sleep(1.1)
        assert client.get(url).status_code == 502  # the probe failed...
        assert client.get(url).status_code == 503  # ...so it is open again at once
    assert service.app.state.services.client.guard.opened == 2


def test_open_breaker_fails_remaining_images_fast_in_a_running_batch(
    start_service: Callable[..., Service], sim_state: SimulatorState
) -> None:
    service = start_service(**(SETTINGS | {"max_concurrent_downloads": 1}))
    order = sim_state.seed_order(images=[SeedImage(name=f"p{i}.jpg") for i in range(10)])
    sim_state.add_fault(Fault(kind="status", status=503, order_id=order["order_id"]))
    with service.client() as client:
        response = client.get(f"/orders/{order['order_id']}/images")
    assert response.status_code == 422
    reasons = [f["reason"] for f in response.json()["failures"]]
    assert sum("HTTP 503" in r for r in reasons) == 3
    assert sum("circuit breaker open" in r for r in reasons) == 7
    assert sim_state.stats["enhanced"] == 3


def test_429_and_definite_answers_do_not_count_as_failures() -> None:
    assert not is_failure(Retryable("HTTP 429", 1.0, 429))
    assert not is_failure(CircuitOpen(3))
    assert is_failure(Retryable("HTTP 502", None, 502))
    assert is_failure(Retryable("body shorter than announced"))
    assert is_failure(httpx.ConnectError("refused"))
    assert is_failure(httpx.ReadTimeout("slow"))
    assert not is_failure(ValueError("a 404 or a bug is not upstream being down"))


async def test_guard_records_consecutive_failures_only() -> None:
    guard = UpstreamGuard(None, threshold=2, reset_seconds=60)
    for exc in (Retryable("HTTP 500", None, 500), ValueError("404"), Retryable("HTTP 500", None, 500)):
        with pytest.raises(type(exc)):
            async with guard.attempt():
                raise exc
    assert await guard.state() == "closed"  # the 404 in between reset the count
    with pytest.raises(Retryable):
        async with guard.attempt():
            raise Retryable("HTTP 500", None, 500)
    assert await guard.state() == "opened"
    with pytest.raises(CircuitOpen) as info:
        await guard.check()
    assert info.value.status_code == 503 and info.value.headers["Retry-After"] == "60"


async def _open(guard: UpstreamGuard) -> None:
    for _ in range(guard.threshold):
        with pytest.raises(Retryable):
            async with guard.attempt():
                raise Retryable("HTTP 503", None, 503)
    assert await guard.state() == "opened"


async def test_half_open_lets_one_probe_through_and_the_rest_follow_its_success() -> None:
    guard = UpstreamGuard(None, threshold=2, reset_seconds=0.2)
    await _open(guard)
    await asyncio.sleep(0.3)
    running = peak = 0
    spans: list[tuple[float, float]] = []

    async def call() -> None:
        nonlocal running, peak
        async with guard.attempt():
            running += 1
            peak = max(peak, running)
            start = time.monotonic()
            await asyncio.sleep(0.1)
            spans.append((start, time.monotonic()))
            running -= 1

    await asyncio.gather(*(call() for _ in range(6)))
    assert await guard.state() == "closed"
    probe = min(spans)
    # nobody ran beside the probe; once it closed the breaker, the others ran together
    assert all(start >= probe[1] for start, end in spans if (start, end) != probe)
    assert peak == 5


async def test_a_failed_probe_fails_the_waiters_fast_without_calling_upstream() -> None:
    guard = UpstreamGuard(None, threshold=2, reset_seconds=30)
    await _open(guard)
    breaker = await guard._breakers.get_breaker("autoenhance")
    breaker.context._state.opened_at -= 31  # as if the open window had passed
    calls = 0

    async def call() -> None:
        nonlocal calls
        async with guard.attempt():
            calls += 1
            await asyncio.sleep(0.1)
            raise Retryable("HTTP 503", None, 503)

    results = await asyncio.gather(*(call() for _ in range(5)), return_exceptions=True)
    assert calls == 1  # only the probe reached upstream
    assert sum(isinstance(r, Retryable) for r in results) == 1
    assert sum(isinstance(r, CircuitOpen) for r in results) == 4
    assert await guard.state() == "opened"
