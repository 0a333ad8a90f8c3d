"""The process-wide budget of upstream downloads, shared fairly between orders.

Each order may run MAX_CONCURRENT_DOWNLOADS downloads, and all orders together at most
MAX_GLOBAL_DOWNLOADS. When the global budget is exhausted, freed slots go round-robin to the orders
that are waiting, so a 1-image order is served after at most one slot turnover, not after the whole
queue of a 1000-image order ahead of it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class FairLimiter:
    """A counting semaphore whose waiters are served round-robin by key."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, key: Hashable) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                queue = self._waiting.get(key)
                if queue is not None and future in queue:
                    queue.remove(future)
                    if not queue:
                        del self._waiting[key]
            raise

    def release(self) -> None:
        while self._waiting:
            key, queue = next(iter(self._waiting.items()))
            future = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # this order goes to the back of the line
            else:
                del self._waiting[key]
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


class OrderSlots:
    """One order's view of the budget: its own cap, then a fair share of the global one."""

    def __init__(self, limiter: FairLimiter, key: Hashable, per_order: int) -> None:
        self._limiter = limiter
        self._key = key
        self._own = asyncio.Semaphore(per_order)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._own:
            await self._limiter.acquire(self._key)
            try:
                yield
            finally:
                self._limiter.release()
