"""The cross-instance download budget on this machine's real Redis (a fresh key prefix per test)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from app.core.budget.shared import SharedBudget


def budget(redis_prefix: str, capacity: int, lease: float = 30.0) -> SharedBudget:
    from tests.support.cluster import REDIS_URL

    return SharedBudget(aioredis.from_url(REDIS_URL, decode_responses=True), f"{redis_prefix}budget:slots", capacity, lease)


def test_two_instances_together_never_exceed_the_capacity(redis_prefix: str) -> None:
    async def scenario() -> tuple[int, int]:
        a, b = budget(redis_prefix, 3), budget(redis_prefix, 3)
        inside = peak = 0

        async def download(shared: SharedBudget) -> None:
            nonlocal inside, peak
            async with shared.slot():
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.03)
                inside -= 1

        await asyncio.gather(*(download(a if n % 2 else b) for n in range(24)))
        held = a.held + b.held
        await a.aclose()
        await b.aclose()
        return peak, held

    peak, held = asyncio.run(scenario())
    assert peak == 3  # saturated, never over
    assert held == 0


def test_a_crashed_holders_slot_lapses_and_a_live_holder_keeps_its_own(redis_prefix: str) -> None:
    async def scenario() -> None:
        crashed, live, waiter = budget(redis_prefix, 2, lease=0.6), budget(redis_prefix, 2, lease=0.6), budget(redis_prefix, 2, lease=0.6)
        assert await crashed.acquire() is not None
        assert crashed._renewer is not None
        crashed._renewer.cancel()  # the process dies: no renewal, no release
        kept = await live.acquire()  # renewed every 0.2 s while held
        started = asyncio.get_running_loop().time()
        token = await asyncio.wait_for(waiter.acquire(), timeout=5)
        waited = asyncio.get_running_loop().time() - started
        assert 0.3 < waited < 4.0  # got the crashed holder's slot once its lease lapsed, not before
        await asyncio.sleep(1.0)  # well past the lease: the live holder's slot is still counted
        assert await asyncio.wait_for(crashed._take(keys=[crashed.key], args=[2, 0.6, "probe"]), 1) == 0
        await live.release(kept)
        await waiter.release(token)
        for shared in (crashed, live, waiter):
            await shared.aclose()

    asyncio.run(scenario())


def test_without_redis_a_download_proceeds_under_the_local_limit() -> None:
    async def scenario() -> str | None:
        shared = SharedBudget(aioredis.from_url("redis://127.0.0.1:1/0"), "x", 1)
        token = await shared.acquire()
        await shared.aclose()
        return token

    assert asyncio.run(scenario()) is None
