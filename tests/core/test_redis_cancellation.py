"""Cancelling a task in the middle of a Redis command stops it, with the service's own clients.

redis-py times each command's write with `asyncio.wait_for`, which on Python 3.11 drops a
cancellation arriving as the write completes: the cancelled task carried on. A job heartbeat that
lost its cancel kept renewing a handed-back job's lease forever, and a stopped worker hung.
The cancel is sent after 0..59 loop steps, so one lands in every phase of a command.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from app.core.redis_client import connect, connection_class, connection_options
from app.jobs.queue import JobStreamBroker
from tests.support.cluster import redis_or_skip

STEPS = 60


async def _lost_cancellations(client: aioredis.Redis) -> list[int]:
    """The step counts after which a cancel did not stop a task looping on GET."""
    lost = []
    for steps in range(STEPS):

        async def loop() -> None:
            while True:
                await client.get("cancel-probe")

        task = asyncio.create_task(loop())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        if not task.done():
            lost.append(steps)
            task.cancel()  # once more, so the loop ends
            await asyncio.wait({task}, timeout=2)
    return lost


def test_a_task_cancelled_during_a_command_stops() -> None:
    url = redis_or_skip()

    async def scenario() -> list[int]:
        client = connect(url)
        try:
            await client.ping()
            return await _lost_cancellations(client)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == []


SCHEMES = {
    "redis://127.0.0.1:6379/0": ("CancelSafeConnection", aioredis.Connection),
    "rediss://cache.example:6380/0": ("CancelSafeSSLConnection", aioredis.SSLConnection),
    "unix:///run/redis.sock": ("CancelSafeUnixConnection", aioredis.UnixDomainSocketConnection),
}


def test_every_pool_opens_cancel_safe_connections_whatever_the_scheme() -> None:
    """The service's clients and taskiq-redis's pool, for TCP, TLS and a Unix socket. redis-py's
    from_url names its own class for rediss:// and unix:// over the one passed in, so a TLS Redis
    (what managed Redis offers) kept the lost cancellations until the pools were fixed after it."""
    for url, (name, base) in SCHEMES.items():
        assert connection_class(url).__name__ == name and issubclass(connection_class(url), base)
        assert connection_options(url)["connection_class"] is connection_class(url)
        client = connect(url)  # lazily connecting: nothing is opened here
        assert client.connection_pool.connection_class is connection_class(url), url
        broker = JobStreamBroker(url, queue_name="q", **connection_options(url))
        assert broker.connection_pool.connection_class is connection_class(url), url
