"""The outbox and watch-store contract, on both backends: SQLite (default) and this machine's real Redis.

"Another process" is a second connection (SQLite: the same file; Redis: a second client): claims,
leases and takes must hold across them, which is what several instances rely on. Redis tests use a
unique key prefix and delete only their own keys; without Redis they skip, except under CI=true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from app import create_app
from app.webhooks.dispatcher import Dispatcher, RetryPolicy
from app.webhooks.outbox import Delivery, DeliveryStatus, Outbox, RedisOutbox, SqliteOutbox, settled
from app.webhooks.signing import signer
from app.webhooks.urls import callback_client
from app.webhooks.watches import RedisWatches, SqliteWatches, Watch, WatchStatus, WatchStore, changed
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Sim, service_settings
from tests.support.cluster import REDIS_URL
from tests.support.jobs_helpers import seed
from tests.support.webhook_receiver import FAST_RETRIES, SECRET, Receiver


class Backend:
    """Opens outboxes and watch stores of one kind, each on its own connection, inside the test's loop."""

    def __init__(self, kind: str, tmp_path: Path, prefix: str | None) -> None:
        self.kind = kind
        self.path = tmp_path / "webhooks.sqlite3"
        self.prefix = prefix or ""
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def outbox(self) -> Outbox:
        if self.kind == "sqlite":
            box = await SqliteOutbox.open(self.path)
            self._closers.append(box.close)
            return box
        return RedisOutbox(self._client(), self.prefix)

    async def watches(self) -> WatchStore:
        if self.kind == "sqlite":
            store = await SqliteWatches.open(self.path)
            self._closers.append(store.close)
            return store
        return RedisWatches(self._client(), self.prefix)

    def _client(self) -> aioredis.Redis:
        client = aioredis.from_url(REDIS_URL, decode_responses=True)
        self._closers.append(client.aclose)
        return client

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """`async with backend() as b:` yields a Backend of the parametrized kind."""
    prefix = request.getfixturevalue("redis_prefix") if request.param == "redis" else None

    @asynccontextmanager
    async def open_backend() -> AsyncIterator[Backend]:
        b = Backend(request.param, tmp_path, prefix)
        try:
            yield b
        finally:
            await b.close()

    yield open_backend


def delivery(n: int, *, at: float | None = None, url: str = "http://127.0.0.1:9/h", job: str | None = None) -> Delivery:
    now = time.time() if at is None else at
    return Delivery(f"msg_{n}", url, f'{{"n": {n}}}', job or f"job{n}", created_at=now, next_attempt_at=now)


# -- outbox -----------------------------------------------------------------------------------------


def test_add_is_idempotent_and_readable(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            box = await b.outbox()
            assert await box.next_due() is None
            first = delivery(1, at=1000.0, job="jobA")
            assert await box.add(first) is True
            assert await box.add(delivery(1, at=2000.0, job="jobA")) is False  # same id: ignored
            assert await box.add(delivery(2, at=1500.0, job="jobA")) is True
            assert await box.get("msg_1") == first
            assert await box.get("msg_9") is None
            assert [d.webhook_id for d in await box.for_job("jobA")] == ["msg_1", "msg_2"]
            assert await box.next_due() == 1000.0

    asyncio.run(scenario())


def test_a_claim_is_exclusive_until_its_lease_runs_out(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            mine, theirs = await b.outbox(), await b.outbox()
            await mine.add(delivery(1))
            (claimed,) = await mine.claim(time.time(), 10, lease_seconds=0.3)
            assert claimed.lease
            assert await theirs.claim(time.time(), 10, lease_seconds=0.3) == []  # leased: invisible
            await asyncio.sleep(0.4)
            (reclaimed,) = await theirs.claim(time.time(), 10, lease_seconds=30)  # the holder "died"
            assert reclaimed.lease != claimed.lease
            late = settled(claimed, status=DeliveryStatus.delivered, attempts=1, next_attempt_at=time.time())
            assert await mine.settle(late) is False  # a stale lease cannot settle
            done = settled(reclaimed, status=DeliveryStatus.delivered, attempts=1, next_attempt_at=time.time())
            assert await theirs.settle(done) is True
            assert await theirs.settle(done) is False  # the lease is gone once settled
            stored = await mine.get("msg_1")
            assert stored is not None and (stored.status, stored.attempts) == (DeliveryStatus.delivered, 1)
            assert await mine.claim(time.time() + 3600, 10, 30) == []
            assert await mine.next_due() is None

    asyncio.run(scenario())


def test_a_rescheduled_delivery_waits_for_its_time(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            box = await b.outbox()
            await box.add(delivery(1))
            (claimed,) = await box.claim(time.time(), 10, 30)
            later = time.time() + 100
            retry = settled(claimed, attempts=1, last_error="receiver answered HTTP 500", next_attempt_at=later)
            assert await box.settle(retry)
            assert await box.next_due() == pytest.approx(later)
            assert await box.claim(time.time(), 10, 30) == []
            (again,) = await box.claim(later, 10, 30)
            assert (again.attempts, again.last_error, again.body) == (1, "receiver answered HTTP 500", '{"n": 1}')

    asyncio.run(scenario())


def test_concurrent_claimers_never_get_the_same_delivery(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            boxes = [await b.outbox() for _ in range(4)]
            for n in range(60):
                await boxes[0].add(delivery(n))

            async def drain(box: Outbox) -> list[str]:
                got: list[str] = []
                while batch := await box.claim(time.time(), 5, 60):
                    got += [d.webhook_id for d in batch]
                    await asyncio.sleep(0)
                return got

            results = await asyncio.gather(*(drain(box) for box in boxes))
            everything = [i for r in results for i in r]
            assert sorted(everything) == sorted(f"msg_{n}" for n in range(60))  # each exactly once

    asyncio.run(scenario())


def test_dispatchers_sharing_an_outbox_send_each_webhook_once(backend: Callable[[], Any]) -> None:
    hooks = Receiver()
    with serve(hooks.app()) as url:

        async def scenario() -> None:
            async with backend() as b:
                boxes = [await b.outbox() for _ in range(3)]
                for n in range(30):
                    await boxes[0].add(delivery(n, url=f"{url}/h"))
                clients = [callback_client(allow_private=True, timeout=5) for _ in boxes]
                dispatchers = [
                    Dispatcher(box, client, signer(SECRET), RetryPolicy(0.05, 0.1, 30), timeout=5)
                    for box, client in zip(boxes, clients, strict=True)
                ]
                try:
                    tasks = [asyncio.create_task(d.run_forever()) for d in dispatchers]
                    deadline = time.monotonic() + 20

                    async def all_delivered() -> bool:
                        states = [await boxes[0].get(f"msg_{n}") for n in range(30)]
                        return all(s is not None and s.status is DeliveryStatus.delivered for s in states)

                    while not await all_delivered():  # settled, not only received (a loaded host is slow)
                        assert time.monotonic() < deadline, len(hooks.received)
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.3)  # time for any duplicate to show up
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                finally:
                    for client in clients:
                        await client.aclose()

        asyncio.run(scenario())
    ids = [r.headers["webhook-id"] for r in hooks.received]
    assert sorted(ids) == sorted(f"msg_{n}" for n in range(30))  # every one, none twice
    for received in hooks.received:
        received.verified()


def test_an_attempt_cut_off_by_shutdown_is_handed_back_at_once(backend: Callable[[], Any]) -> None:
    hooks = Receiver(delays=[1.5])
    with serve(hooks.app()) as url:

        async def scenario() -> None:
            async with backend() as b:
                box, other = await b.outbox(), await b.outbox()
                await box.add(delivery(1, url=f"{url}/h"))
                client = callback_client(allow_private=True, timeout=10)
                dispatcher = Dispatcher(box, client, signer(SECRET), RetryPolicy(0.05, 0.1, 30), timeout=10)
                try:
                    task = asyncio.create_task(dispatcher.run_once())
                    while not hooks.received:
                        await asyncio.sleep(0.02)
                    assert await other.claim(time.time(), 10, 30) == []  # leased while in flight
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    (back,) = await other.claim(time.time(), 10, 30)  # not 40 s later
                    assert (back.webhook_id, back.attempts) == ("msg_1", 0)
                finally:
                    await client.aclose()

        asyncio.run(scenario())


def test_reopening_the_sqlite_outbox_releases_a_dead_process_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        box = await SqliteOutbox.open(tmp_path / "o.sqlite3")
        await box.add(delivery(1))
        assert len(await box.claim(time.time(), 10, lease_seconds=3600)) == 1
        await box.close()  # "crashed" mid-attempt: never settled
        reopened = await SqliteOutbox.open(tmp_path / "o.sqlite3")
        try:
            (again,) = await reopened.claim(time.time(), 10, 30)
            assert again.webhook_id == "msg_1"
        finally:
            await reopened.close()

    asyncio.run(scenario())


# -- watches ----------------------------------------------------------------------------------------


def watch(n: int, order_id: str = "order-1") -> Watch:
    return Watch(f"w{n}", order_id, {"format": "jpeg"}, f"http://cb/{n}", "http://svc", created_at=time.time())


def test_take_hands_each_watch_to_one_taker(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            one, two = await b.watches(), await b.watches()
            for n in range(5):
                await one.add(watch(n))
            await one.add(watch(9, order_id="order-2"))
            taken = await asyncio.gather(one.take("order-1", time.time()), two.take("order-1", time.time()))
            ids = sorted(w.watch_id for group in taken for w in group)
            assert ids == [f"w{n}" for n in range(5)]
            assert await one.take("order-1", time.time()) == []
            stored = await two.get("w0")
            assert stored is not None and stored.status is WatchStatus.starting
            await two.save(changed(stored, status=WatchStatus.started, job_id="job-0"))
            started = await one.get("w0")
            assert started is not None and (started.status, started.job_id) == (WatchStatus.started, "job-0")
            untouched = await one.get("w9")
            assert untouched is not None and untouched.status is WatchStatus.watching
            assert await one.get("nope") is None

    asyncio.run(scenario())


def test_watches_left_starting_by_a_dead_taker_are_requeued(backend: Callable[[], Any]) -> None:
    async def scenario() -> None:
        async with backend() as b:
            store, other = await b.watches(), await b.watches()
            await store.add(watch(1))
            await store.add(watch(2, order_id="order-2"))
            now = time.time()
            assert len(await store.take("order-1", now - 200)) == 1  # taken long ago, never finished
            (finished,) = await store.take("order-2", now - 200)
            await store.save(changed(finished, status=WatchStatus.started, job_id="j"))  # this one finished
            assert await other.requeue_stale(now - 300) == []  # not stale yet by that cutoff
            assert await other.requeue_stale(now - 100) == ["order-1"]
            assert await store.requeue_stale(now - 100) == []  # handed out once
            back = await store.get("w1")
            assert back is not None and back.status is WatchStatus.watching
            (again,) = await store.take("order-1", now)
            assert again.watch_id == "w1"

    asyncio.run(scenario())


def test_sqlite_watches_expire(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await SqliteWatches.open(tmp_path / "w.sqlite3")
        try:
            await store.add(watch(1))
            assert await store.expire(time.time() - 60) == 0
            assert await store.expire(time.time() + 60) == 1
            expired = await store.get("w1")
            assert expired is not None and expired.status is WatchStatus.expired
            assert await store.take("order-1", time.time()) == []
        finally:
            await store.close()

    asyncio.run(scenario())


# -- the service on Redis ---------------------------------------------------------------------------


def test_with_redis_url_another_instance_delivers_what_a_stopped_one_queued(
    simulator: Sim, tmp_path: Path, redis_prefix: str
) -> None:
    """Two instances (separate data dirs) share the outbox through Redis: B sends A's pending callback,
    under the same webhook-id; watches live in Redis too."""
    hooks = Receiver(default=503)
    shared = FAST_RETRIES | {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix, "autoenhance_webhook_token": "t"}
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    busy_order = seed(simulator, SeedImage(name="b.jpg", status="processing"))
    with serve(hooks.app()) as hook_url:
        settings_a = service_settings(simulator.url, tmp_path / "a", **shared)
        with serve(create_app(settings_a)) as url, httpx.Client(base_url=url) as client:
            response = client.post(f"/orders/{order_id}/jobs", json={"callback_url": hook_url + "/h"})
            job_id = response.json()["job_id"]
            hooks.wait_for(1)
            watch_id = client.post(f"/orders/{busy_order}/watch").json()["watch_id"]
        hooks.default = 200
        settings_b = service_settings(simulator.url, tmp_path / "b", **shared)
        with serve(create_app(settings_b)) as url, httpx.Client(base_url=url) as client:
            deadline = time.monotonic() + 15
            while not any(r.json().get("status") == "completed" for r in hooks.received if r.body):
                assert time.monotonic() < deadline, hooks.received
                time.sleep(0.05)
            watched = client.get(f"/watches/{watch_id}")  # made on A, read on B
            assert watched.status_code == 200 and watched.json()["status"] == "watching"
    assert {r.headers["webhook-id"] for r in hooks.received} == {f"msg_job_{job_id}"}
    assert hooks.received[-1].verified()["job_id"] == job_id
    client_sync = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert client_sync.exists(f"{redis_prefix}webhooks:delivery:msg_job_{job_id}")
    assert client_sync.ttl(f"{redis_prefix}webhooks:delivery:msg_job_{job_id}") > 0  # settled: expires
    assert not (tmp_path / "a" / "webhooks.sqlite3").exists()
