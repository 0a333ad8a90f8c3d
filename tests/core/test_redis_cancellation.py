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


def test_the_queue_pool_gets_the_same_connections() -> None:
    """taskiq-redis builds its pool from connection_options: the same cancel-safe class, by scheme."""
    assert connection_options("redis://127.0.0.1:6379/0")["connection_class"].__name__ == "CancelSafeConnection"
    assert connection_class("rediss://cache.example:6380/0").__name__ == "CancelSafeSSLConnection"
    assert issubclass(connection_class("rediss://cache.example:6380/0"), aioredis.SSLConnection)
    assert issubclass(connection_class("unix:///run/redis.sock"), aioredis.UnixDomainSocketConnection)
