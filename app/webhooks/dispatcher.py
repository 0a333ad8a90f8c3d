"""Sends what the outbox holds: claim due deliveries, sign, POST, settle; retry with backoff.

Every process that serves the API runs one dispatcher. With the Redis outbox several of them share
the queue; the claim's lease keeps any one attempt to one sender. The signature is computed per
attempt (fresh `webhook-timestamp`), over the same stored body and the same `webhook-id`.

Receivers are strangers, so no receiver may hold up another's callback: each attempt runs in its
own task (at most MAX_IN_FLIGHT at once), the loop claims more as soon as a slot frees, and each
attempt has one total deadline (connect, response head, all of it). httpx's own timeouts are per
phase and per read, so a receiver trickling its head a byte at a time would never trip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from standardwebhooks import Webhook

from app.webhooks.outbox import SETTLED_RETENTION_SECONDS, Delivery, DeliveryStatus, Outbox, settled
from app.webhooks.signing import signed_headers
from app.webhooks.urls import UnsafeAddress

log = logging.getLogger("app.webhooks")

IDLE_POLL_SECONDS = 1.0
"""Longest sleep between looks at the outbox (another instance may have queued something due)."""
CLAIM_BATCH = 16
"""Most deliveries claimed per pass (the loop passes again as soon as one ends)."""
MAX_IN_FLIGHT = 64
"""Attempts one dispatcher runs at once. Each holds a socket and a task for at most its deadline;
the callback client's connection pool is sized to match (app/webhooks/urls.py)."""
LEASE_MARGIN_SECONDS = 30.0
PURGE_INTERVAL_SECONDS = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter, for `window` seconds after the delivery was queued.

    Attempt n (n >= 1 failed attempts so far) waits between d/2 and d, d = min(max_delay, base * 2**(n-1));
    the last attempt is made at the end of the window at the latest, then the delivery is dropped.
    """

    base: float
    max_delay: float
    window: float

    def delay(self, failed_attempts: int, rand: Callable[[], float] = random.random) -> float:
        full = min(self.max_delay, self.base * 2 ** max(0, failed_attempts - 1))
        return full / 2 + rand() * full / 2

    def next_attempt(self, delivery: Delivery, now: float) -> float | None:
        """When to try again after `delivery.attempts` failures, or None: the window is over."""
        deadline = delivery.created_at + self.window
        if now >= deadline:
            return None
        return min(now + self.delay(delivery.attempts), deadline)


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        client: httpx.AsyncClient,
        hook: Webhook | None,
        policy: RetryPolicy,
        *,
        timeout: float,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.hook = hook
        self.policy = policy
        self.timeout = timeout
        self.lease_seconds = timeout + LEASE_MARGIN_SECONDS
        self.max_in_flight = max_in_flight
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """A delivery was queued here: look now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run_forever(self) -> None:
        next_purge = 0.0
        try:
            while True:
                wait = IDLE_POLL_SECONDS
                try:
                    await self.start_due()
                    due = await self.outbox.next_due()
                    if due is not None and self.in_flight < self.max_in_flight:
                        wait = max(0.0, min(wait, due - time.time()))  # full: an ending attempt wakes us
                    if time.time() >= next_purge:
                        await self.outbox.purge(time.time() - SETTLED_RETENTION_SECONDS)
                        next_purge = time.time() + PURGE_INTERVAL_SECONDS
                except Exception:  # a bad pass (database busy, Redis blip) must not stop the next one
                    log.exception("webhook dispatch pass failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: on 3.11 it drops a cancel that meets the wake-up
                        await self._wake.wait()
                self._wake.clear()
        finally:  # stopping: attempts in flight hand their deliveries back (see _attempt_and_settle)
            ending = list(self._in_flight)
            for task in ending:
                task.cancel()
            await asyncio.gather(*ending, return_exceptions=True)

    async def start_due(self) -> list[asyncio.Task[None]]:
        """Claim what is due, as far as free slots allow, and start each attempt in its own task."""
        free = self.max_in_flight - self.in_flight
        if free <= 0:
            return []
        claimed = await self.outbox.claim(time.time(), min(free, CLAIM_BATCH), self.lease_seconds)
        started = []
        for delivery in claimed:
            task = asyncio.create_task(self._attempt_and_settle(delivery), name=f"webhook {delivery.webhook_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._ended)
            started.append(task)
        return started

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free: claim again now, not at the next poll

    async def run_once(self) -> int:
        """Claim what is due, attempt it and wait for those attempts; the number made (for one-off runs)."""
        started = await self.start_due()
        if started:
            await asyncio.gather(*started)
        return len(started)

    async def _attempt_and_settle(self, delivery: Delivery) -> None:
        try:
            outcome = await self.attempt(delivery)
        except asyncio.CancelledError:  # shutting down mid-attempt: hand it back now, not when the lease ends
            await self.outbox.settle(settled(delivery, next_attempt_at=time.time()))
            raise
        except Exception:  # a bug in one attempt must not go unseen; its lease runs out and it is retried
            log.exception("webhook attempt crashed", extra={"webhook_id": delivery.webhook_id})
            return
        try:
            if not await self.outbox.settle(outcome):
                log.warning("webhook lease lost before settling", extra={"webhook_id": delivery.webhook_id})
        except Exception:  # the outbox is down: the lease runs out and another pass retries the delivery
            log.exception("webhook outcome not saved", extra={"webhook_id": delivery.webhook_id})

    async def attempt(self, delivery: Delivery) -> Delivery:
        """POST once; the delivery with the outcome applied (delivered, rescheduled, or failed)."""
        now = time.time()
        attempts = delivery.attempts + 1
        code: int | None = None
        final = False
        try:
            if self.hook is None:
                raise _Unsigned()
            headers = signed_headers(self.hook, delivery.webhook_id, delivery.body, now)
            headers["content-type"] = "application/json"
            async with asyncio.timeout(self.timeout):  # the whole exchange, however its bytes trickle
                body = delivery.body.encode()
                async with self.client.stream("POST", delivery.url, content=body, headers=headers) as r:
                    code = r.status_code  # the body is never read: a receiver's answer is only its status
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s (WEBHOOK_TIMEOUT_SECONDS)"
        except UnsafeAddress as exc:
            error, final = f"refused: {exc}", True
        except _Unsigned:
            error = "not sent: WEBHOOK_SECRET is not set"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if 200 <= code < 300:
                log.info("webhook delivered", extra=_log_fields(delivery, attempts, code))
                return settled(
                    delivery,
                    status=DeliveryStatus.delivered,
                    attempts=attempts,
                    last_attempt_at=now,
                    last_status_code=code,
                    last_error=None,
                    next_attempt_at=now,
                )
            error = f"receiver answered HTTP {code}"
            final = code == 410  # Gone: the receiver says this endpoint is retired (Standard Webhooks)
        after = settled(delivery, attempts=attempts, last_attempt_at=now, last_status_code=code, last_error=error)
        retry_at = None if final else self.policy.next_attempt(after, time.time())
        if retry_at is None:
            log.warning("webhook dropped", extra=_log_fields(delivery, attempts, code) | {"error": error})
            return settled(after, status=DeliveryStatus.failed, next_attempt_at=now)
        log.info("webhook attempt failed", extra=_log_fields(delivery, attempts, code) | {"error": error})
        return settled(after, status=DeliveryStatus.pending, next_attempt_at=retry_at)


class _Unsigned(Exception):
    pass


def _log_fields(delivery: Delivery, attempts: int, code: int | None) -> dict[str, object]:
    return {"webhook_id": delivery.webhook_id, "job_id": delivery.job_id, "attempt": attempts, "status_code": code}
