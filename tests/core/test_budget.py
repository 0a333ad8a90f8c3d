"""The fair download budget: bounded, round-robin between orders, cancellation-safe."""

from __future__ import annotations

import asyncio

from app.core.budget.local import FairLimiter, OrderSlots


async def test_global_cap_is_never_exceeded() -> None:
    limiter = FairLimiter(3)
    running = peak = 0

    async def work(slots: OrderSlots) -> None:
        nonlocal running, peak
        async with slots.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001)
            running -= 1

    orders = [OrderSlots(limiter, key=k, per_order=5) for k in range(4)]
    await asyncio.gather(*(work(o) for o in orders for _ in range(10)))
    assert peak == 3
    assert limiter.in_use == 0 and limiter.waiting == 0


async def test_small_order_is_served_next_not_after_the_big_queue() -> None:
    limiter = FairLimiter(2)
    order_log: list[str] = []
    gate = asyncio.Event()

    async def work(slots: OrderSlots, tag: str) -> None:
        async with slots.slot():
            order_log.append(tag)
            await gate.wait()

    big = OrderSlots(limiter, key="big", per_order=100)
    small = OrderSlots(limiter, key="small", per_order=5)
    big_tasks = [asyncio.create_task(work(big, "big")) for _ in range(50)]
    await asyncio.sleep(0)
    small_task = asyncio.create_task(work(small, "small"))
    await asyncio.sleep(0)
    assert order_log == ["big", "big"]  # budget full; 48 big and 1 small waiting
    gate.set()
    await asyncio.gather(*big_tasks, small_task)
    # the small order got the first freed slot, not the 51st
    assert order_log.index("small") <= 3


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = FairLimiter(1)
    await limiter.acquire("a")
    waiter = asyncio.create_task(limiter.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.in_use == 0 and limiter.waiting == 0
    await asyncio.wait_for(limiter.acquire("c"), 1)


async def test_slot_granted_while_cancelled_is_passed_on() -> None:
    limiter = FairLimiter(1)
    await limiter.acquire("a")
    waiter = asyncio.create_task(limiter.acquire("b"))
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.in_use == 0
