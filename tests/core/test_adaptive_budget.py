"""The adaptive budget: shrinks on overload, grows back while upstream answers well, pauses on Retry-After.

The unit tests pin the policy; the end-to-end test shows the service settling near a simulator that
allows only N concurrent downloads, without a storm of 429s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from app.core.budget.local import FairLimiter
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip


async def test_overload_shrinks_by_a_quarter_and_not_below_the_minimum() -> None:
    limiter = FairLimiter(20, minimum=4)
    limiter.on_overload(time.monotonic())
    assert limiter.capacity == 15
    for _ in range(10):
        limiter.on_overload(time.monotonic())
    assert limiter.capacity == 4


async def test_echoes_of_an_overload_already_handled_do_not_shrink_again() -> None:
    limiter = FairLimiter(20)
    started = time.monotonic()  # twenty requests in flight, all started before the first 429
    await asyncio.sleep(0.001)
    limiter.on_overload(started)
    for _ in range(19):
        limiter.on_overload(started)
    assert limiter.capacity == 15 and limiter.decreases == 1


async def test_grows_back_only_while_the_budget_is_used_and_never_past_the_maximum() -> None:
    limiter = FairLimiter(8, minimum=1)
    limiter.on_overload(time.monotonic())  # 8 -> 6, ceiling 8
    assert limiter.capacity == 6
    for _ in range(50):
        limiter.on_success()  # nothing in use: no evidence upstream takes more
    assert limiter.capacity == 6
    for _ in range(6):
        await limiter.acquire("a")
    for _ in range(6):
        limiter.on_success()  # one full window at 6 -> 7
    assert limiter.capacity == 7
    await limiter.acquire("a")
    for _ in range(7):
        limiter.on_success()  # 7 is next to the ceiling (8): a window no longer suffices
    assert limiter.capacity == 7
    for _ in range(7 * 10):
        limiter.on_success()
    assert limiter.capacity == 8
    await limiter.acquire("a")
    for _ in range(1000):
        limiter.on_success()
    assert limiter.capacity == 8  # the configured maximum


async def test_a_shrunk_budget_hands_out_no_slot_until_enough_are_released() -> None:
    limiter = FairLimiter(4)
    for _ in range(4):
        await limiter.acquire("a")
    limiter.on_overload(time.monotonic())  # 4 -> 3 while 4 are in use
    waiter = asyncio.create_task(limiter.acquire("b"))
    limiter.release()  # 3 in use: at capacity, the waiter must still wait
    await asyncio.sleep(0.01)
    assert not waiter.done()
    limiter.release()
    await asyncio.wait_for(waiter, 1)
    assert limiter.in_use == 3


async def test_retry_after_pauses_every_order() -> None:
    limiter = FairLimiter(10)
    await limiter.acquire("a")
    limiter.on_overload(time.monotonic(), retry_after=0.3)
    started = time.monotonic()
    others = [asyncio.create_task(limiter.acquire(key)) for key in ("a", "b", "c")]
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in others)  # free slots, yet nobody gets one during the pause
    await asyncio.wait_for(asyncio.gather(*others), 2)
    assert time.monotonic() - started >= 0.29
    assert limiter.in_use == 4


@pytest.mark.alone
def test_service_settles_near_an_upstream_limit_without_a_storm_of_429s(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    limit = 4
    simulator.state.configure(max_concurrent_downloads=limit, download_latency=0.02)
    service = start_service(
        max_global_downloads=24, max_concurrent_downloads=24, cache_ttl_seconds=0, retry_attempts=6
    )
    limiter = service.app.state.services.engine.limiter
    orders = [
        simulator.state.seed_order(name=f"Order {n}", images=[SeedImage(name=f"p{i}.jpg", size=20_000) for i in range(60)])
        for n in range(2)
    ]
    with service.client(timeout=120) as client:
        # the first order teaches the service upstream's limit: a burst of 429s, then the budget shrinks
        response = client.get(f"/orders/{orders[0]['order_id']}/images")
        assert response.status_code == 200
        assert len(check_zip(response.content)) == 60 + 1  # every image and the manifest
        learned = limiter.capacity
        assert learned < 24
        first_429 = simulator.state.stats["rate_limited"]
        simulator.state.reset_stats()
        # the second runs at the learned size: close to the limit, and (almost) no 429
        response = client.get(f"/orders/{orders[1]['order_id']}/images")
        assert response.status_code == 200
        assert len(check_zip(response.content)) == 60 + 1
    stats = simulator.state.stats
    assert stats["rate_limited"] <= 3, f"second order still met {stats['rate_limited']} 429s (first: {first_429})"
    assert first_429 > stats["rate_limited"]
    assert limit - 1 <= limiter.capacity <= limit + 1
    assert stats["peak_concurrent_downloads"] >= limit - 1  # it used what upstream allows, not a trickle


@pytest.mark.alone
def test_fixed_budget_over_the_limit_storms(simulator: Sim, start_service: Callable[..., Service]) -> None:
    """The control: the same order with adaptation made impossible (minimum = maximum) meets a storm of 429s.

    One attempt per image keeps it short: the point is how many requests upstream refuses."""
    simulator.state.configure(max_concurrent_downloads=4, download_latency=0.02)
    service = start_service(
        max_global_downloads=24, min_global_downloads=24, max_concurrent_downloads=24, cache_ttl_seconds=0,
        retry_attempts=1,
    )
    order = simulator.state.seed_order(images=[SeedImage(name=f"p{i}.jpg", size=20_000) for i in range(60)])
    with service.client(timeout=120) as client:
        client.get(f"/orders/{order['order_id']}/images")
    assert simulator.state.stats["rate_limited"] >= 20
