"""How the service reacts to upstream health: a circuit breaker (purgatory) and the adaptive budget.

Every upstream attempt runs inside `UpstreamGuard.attempt()`. The guard sorts its outcome:
- success, or a definitive answer (404, 401, an image too large): upstream is healthy;
- 429: upstream is busy, not sick: the budget shrinks and a Retry-After pauses everyone; the
  breaker does not count it;
- 5xx, a timeout, a connection failure, a truncated body: a failure for the breaker (timeouts also
  shrink the budget).
After BREAKER_THRESHOLD consecutive failures the breaker opens: for BREAKER_RESET_SECONDS every
attempt fails at once with `CircuitOpen` (the routes answer 503 with Retry-After; a running batch
reports its remaining images as not tried) instead of waiting on timeouts. Then it half-opens and
lets exactly one attempt through as a probe; the others wait for its outcome. A success closes the
breaker and the waiters go on; a failure opens it again and the waiters fail fast. Without the gate,
every request that arrived during the open window would hit a still-sick upstream at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from app.core.budget.local import FairLimiter
from app.errors import Unavailable

log = logging.getLogger("app.breaker")

CIRCUIT = "autoenhance"


class CircuitOpen(Unavailable):
    """Autoenhance failed repeatedly: fail fast (503 + Retry-After) until the breaker half-opens."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "Autoenhance is failing repeatedly, so this service has stopped calling it for a moment; "
            f"retry in {self.retry_after} s",
            headers={"Retry-After": str(self.retry_after)},
        )


class Outcome(Protocol):
    """What the guard needs to know of an upstream exception (app.core.upstream.client.Retryable fits)."""

    status: int | None
    retry_after: float | None


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def is_overload(exc: BaseException) -> bool:
    """Upstream says it is too busy: 429, or it did not answer in time."""
    return _status_of(exc) == 429 or isinstance(exc, httpx.TimeoutException)


def is_failure(exc: BaseException) -> bool:
    """Counts towards opening the breaker: upstream looks sick, not merely busy or saying no."""
    if isinstance(exc, asyncio.CancelledError | CircuitOpen):
        return False
    if isinstance(exc, httpx.TransportError):  # timeouts, refused or dropped connections
        return True
    status = _status_of(exc)
    if hasattr(exc, "retry_after"):  # a Retryable: 5xx, truncated or empty body, expired link
        return status != 429 and (status is None or status >= 500)
    return False


class UpstreamGuard:
    """The breaker and the budget, fed by the client with every attempt's outcome."""

    def __init__(self, limiter: FairLimiter | None, *, threshold: int = 5, reset_seconds: float = 30.0) -> None:
        self.limiter = limiter
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=reset_seconds,
            exclude=[(BaseException, lambda exc: not is_failure(exc))],
        )
        self.opened = 0
        self._probe = asyncio.Lock()  # held by the one attempt probing a half-open (or expiring) breaker

    async def state(self) -> str:
        """closed, opened or half-opened (for /api/stats and tests)."""
        breaker = await self._breakers.get_breaker(CIRCUIT)
        return breaker.context.state

    async def check(self) -> None:
        """Raise CircuitOpen while the breaker is open, without counting as a request."""
        breaker = await self._breakers.get_breaker(CIRCUIT)
        context = breaker.context
        if context.state == "opened" and context.opened_at is not None:
            remaining = context.opened_at + self.reset_seconds - time.time()
            if remaining > 0:
                raise CircuitOpen(remaining)

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        """Wrap one upstream attempt: fail fast when open, then record what happened."""
        breaker = await self._breakers.get_breaker(CIRCUIT)
        probing = False
        if breaker.context.state != "closed":
            await self._probe.acquire()  # one probe at a time; the rest queue here for its outcome
            probing = breaker.context.state != "closed"
            if not probing:
                self._probe.release()  # the probe before us closed it: go on as usual
        try:
            async with self._recorded(breaker):
                yield
        finally:
            if probing:
                self._probe.release()

    @asynccontextmanager
    async def _recorded(self, breaker: Any) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            await breaker.__aenter__()
        except OpenedState as exc:
            raise CircuitOpen(exc.opened_at + self.reset_seconds - time.time()) from None
        was = breaker.context.state
        try:
            yield
        except asyncio.CancelledError:
            raise  # the caller left: says nothing about upstream
        except BaseException as exc:
            await breaker.__aexit__(type(exc), exc, exc.__traceback__)
            self._note(was, breaker.context.state)
            if self.limiter is not None and is_overload(exc):
                self.limiter.on_overload(started, getattr(exc, "retry_after", None))
            raise
        await breaker.__aexit__(None, None, None)
        self._note(was, breaker.context.state)
        if self.limiter is not None:
            self.limiter.on_success()

    def _note(self, was: str, now: str) -> None:
        if was == now:
            return
        if now == "opened":
            self.opened += 1
            log.error("circuit breaker opened: Autoenhance keeps failing; failing fast for %g s", self.reset_seconds)
        else:
            log.warning("circuit breaker %s", now)
