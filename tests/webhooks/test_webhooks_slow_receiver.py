"""A callback receiver that trickles its answer holds only its own delivery, and only until the deadline.

The slow receiver is a raw socket that sends its response head one byte a second for ever, so no
per-phase timeout of the HTTP client ever fires; a normal receiver beside it must still get its
callback while the slow exchange is open, and the slow one must be cut at WEBHOOK_TIMEOUT_SECONDS
and retried by the outbox's rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from app.webhooks.dispatcher import MAX_IN_FLIGHT, Dispatcher, RetryPolicy
from app.webhooks.outbox import Delivery, SqliteOutbox
from app.webhooks.signing import signer
from app.webhooks.urls import callback_client
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.jobs_helpers import poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, SECRET, Exchange, Receiver, TricklingReceiver, serving

DEADLINE = 4.0


def test_a_trickling_receiver_neither_delays_other_callbacks_nor_outlives_its_deadline(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(**(FAST_RETRIES | {"webhook_timeout_seconds": DEADLINE, "webhook_retry_base_seconds": 0.5}))
    slow_order = seed(simulator, SeedImage(name="slow.jpg"))
    normal_order = seed(simulator, SeedImage(name="normal.jpg"))
    with TricklingReceiver() as slow, serving() as normal, service.client() as client:
        slow_job = client.post(f"/orders/{slow_order}/jobs", json={"callback_url": f"{slow.url}/h"}).json()["job_id"]
        (first,) = slow.wait_for(1)  # the dispatcher is now inside the slow exchange
        normal_job = client.post(f"/orders/{normal_order}/jobs", json={"callback_url": f"{normal.url}/h"})
        (delivered,) = normal.wait_for(1, timeout=DEADLINE * 3)
        assert delivered.verified()["job_id"] == normal_job.json()["job_id"]
        assert first.closed is None or delivered.at < first.closed  # not after the slow one ended

        cut = slow.wait_for(1, closed=True)[0]
        assert cut.closed is not None
        assert DEADLINE - 0.5 <= cut.closed - cut.opened <= DEADLINE + 2.5  # the deadline, not a read timeout
        assert cut.trickled >= 2  # bytes kept coming: only a total deadline stops this exchange
        state = poll(client, slow_job, lambda s: (s["webhook"] or {}).get("attempts", 0) >= 1)["webhook"]
        assert state["status"] == "pending"  # to be retried
        assert f"no answer within {DEADLINE:g} s" in state["last_error"]
        slow.wait_for(2)  # ... and retried, per the retry policy


def test_a_dozen_slow_receivers_do_not_queue_the_next_callback_behind_them(tmp_path: Path) -> None:
    """More slow exchanges than httpx's default pool (10) and than one claim batch: the next
    delivery still goes out while every slow one is open."""
    slow_count = 12

    async def scenario(slow: TricklingReceiver, normal: Receiver) -> tuple[list[Exchange], float]:
        outbox = await SqliteOutbox.open(tmp_path / "outbox.sqlite3")
        client = callback_client(allow_private=True, timeout=60, max_connections=MAX_IN_FLIGHT)
        dispatcher = Dispatcher(outbox, client, signer(SECRET), RetryPolicy(5, 5, 300), timeout=60)
        task = asyncio.create_task(dispatcher.run_forever())
        try:
            now = time.time()
            for n in range(slow_count):
                await outbox.add(
                    Delivery(f"slow_{n}", f"{slow.url}/h", "{}", None, created_at=now, next_attempt_at=now)
                )
            while len(slow.exchanges) < slow_count:  # all of them open at once
                await asyncio.sleep(0.02)
            now = time.time()
            await outbox.add(Delivery("normal", f"{normal.url}/h", "{}", None, created_at=now, next_attempt_at=now))
            dispatcher.wake()
            while not normal.received:
                await asyncio.sleep(0.02)
            return list(slow.exchanges), normal.received[0].at
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()
            await outbox.close()

    with TricklingReceiver() as slow, serving() as normal:
        exchanges, delivered_at = asyncio.run(asyncio.wait_for(scenario(slow, normal), timeout=30))
    assert len(exchanges) == slow_count
    assert all(e.closed is None or e.closed > delivered_at for e in exchanges)  # all still open
