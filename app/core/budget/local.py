"""The process-wide budget of upstream downloads: shared fairly between orders, sized by how upstream copes.

Each order may run MAX_CONCURRENT_DOWNLOADS downloads, and all orders together at most `capacity`.
When the budget is exhausted, freed slots go round-robin to the orders that are waiting, so a
1-image order is served after at most one slot turnover, not after the whole queue of a 1000-image
order ahead of it.

`capacity` adapts (AIMD, as TCP does): it starts at the configured maximum (MAX_GLOBAL_DOWNLOADS),
shrinks by a quarter when upstream says it is overloaded (429, or a timeout), at most once per
"generation" of requests, and grows back by one slot per window of successful answers while the
budget is fully used, never above the maximum or below the minimum. Near the size that last
overloaded upstream it grows ten times slower, so it settles just under upstream's limit and only
probes past it now and then, instead of a 429 every few windows. A Retry-After pauses every
order: no slot is handed out until it has passed, because upstream's limit is per key, not per
request.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

DECREASE_FACTOR = 0.75
"""On overload the budget keeps this share of its capacity."""

PROBE_SLOWDOWN = 10
"""At the size that last overloaded upstream, growth is this many times slower: probe, don't push."""

MAX_PAUSE_SECONDS = 30.0
"""A Retry-After longer than this is capped (the client caps it too)."""


class FairLimiter:
    """A counting semaphore whose waiters are served round-robin by key; its size adapts.

    `capacity=N` alone is a fixed budget of N (the adaptive hooks are then no-ops at the maximum
    unless `on_overload` is called). `minimum` is the floor the budget never shrinks below.
    """

    def __init__(self, capacity: int, *, minimum: int = 1, maximum: int | None = None) -> None:
        self.maximum = maximum if maximum is not None else capacity
        self.minimum = max(1, min(minimum, self.maximum))
        self._capacity = max(self.minimum, min(capacity, self.maximum))
        self._in_use = 0
        self._successes = 0
        self._ceiling: int | None = None  # the capacity at which upstream last said "too many"
        self._generation_started = time.monotonic()
        self._paused_until = 0.0
        self._resume: asyncio.TimerHandle | None = None
        self._waiting: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()
        self.decreases = 0
        self.pauses = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._paused_until

    def _has_room(self) -> bool:
        return self._in_use < self._capacity and not self.paused

    async def acquire(self, key: Hashable) -> None:
        if self._has_room() and not self._waiting:
            self._in_use += 1
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
        self._in_use -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiters, one order at a time, round-robin."""
        while self._waiting and self._has_room():
            key, queue = next(iter(self._waiting.items()))
            future = queue.popleft()
            if queue:
                self._waiting.move_to_end(key)  # this order goes to the back of the line
            else:
                del self._waiting[key]
            if not future.done():
                self._in_use += 1
                future.set_result(None)

    # -- adaptation: the upstream client reports each attempt's outcome -------------------------

    def on_success(self) -> None:
        """Upstream answered well: grow by one slot per `capacity` successes, if the budget was full."""
        if self._capacity >= self.maximum or self._in_use < self._capacity:
            return
        near_ceiling = self._ceiling is not None and self._capacity + 1 >= self._ceiling
        self._successes += 1
        if self._successes >= self._capacity * (PROBE_SLOWDOWN if near_ceiling else 1):
            self._successes = 0
            self._capacity += 1
            if self._ceiling is not None and self._capacity > self._ceiling:
                self._ceiling = None  # upstream takes more than it used to
            self._dispatch()

    def on_overload(self, started_at: float, retry_after: float | None = None) -> None:
        """Upstream is overloaded (429 or a timeout) for a request started at `started_at` (monotonic).

        Requests started before the last decrease belong to the old, larger budget: their 429s
        are echoes of the overload already handled, so they do not shrink the budget again.
        """
        if retry_after is not None and retry_after > 0:
            self.pause(retry_after)
        if started_at < self._generation_started:
            return
        self._generation_started = time.monotonic()
        self._successes = 0
        self._ceiling = self._capacity
        smaller = max(self.minimum, int(self._capacity * DECREASE_FACTOR))
        if smaller < self._capacity:
            self._capacity = smaller
            self.decreases += 1

    def pause(self, seconds: float) -> None:
        """Hand out no slot for `seconds` (Retry-After): every order waits, not only the one told."""
        seconds = min(seconds, MAX_PAUSE_SECONDS)
        until = time.monotonic() + seconds
        if until <= self._paused_until:
            return
        self._paused_until = until
        self.pauses += 1
        if self._resume is not None:
            self._resume.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._resume = loop.call_later(seconds, self._wake)

    def _wake(self) -> None:
        self._resume = None
        remaining = self._paused_until - time.monotonic()
        if remaining > 0:  # the timer fired a hair early: look again when the pause is really over
            self._resume = asyncio.get_running_loop().call_later(remaining, self._wake)
            return
        self._dispatch()


class OrderSlots:
    """One order's view of the budget: its own cap, then a fair share of the global one."""

    def __init__(
        self,
        limiter: FairLimiter,
        key: Hashable,
        per_order: int,
        shared: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._limiter = limiter
        self._key = key
        self._own = asyncio.Semaphore(per_order)
        self._shared = shared  # the cross-instance budget (app/core/budget/shared.py), taken after the local slot

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._own:
            await self._limiter.acquire(self._key)
            try:
                if self._shared is None:
                    yield
                else:
                    async with self._shared():
                        yield
            finally:
                self._limiter.release()
