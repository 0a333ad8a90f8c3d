"""The Redis job queue loses no message: one taken but never acknowledged (its worker died before the
claim) goes to another consumer, Redis losing its data does not stop consumers, and a message the
sweeper could not send is sent at its next pass. Against a private redis-server (data is flushed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from taskiq import AckableMessage

from app.config import Settings
from app.jobs import queue as job_queue
from app.jobs.queue import JobQueue, stream_key
from app.jobs.records import JobStatus
from app.jobs.redis_store import RedisJobStore
from app.jobs.results import result_store
from app.jobs.supervisor import Supervisor
from harness.servers import free_port
from tests.jobs.test_jobs_stores import job
from tests.support.redis_server import RedisServer, private_redis

PREFIX = "queue:"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with private_redis(tmp_path) as started:
        yield started


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(redis_url=url, redis_key_prefix=PREFIX, data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


async def _never(job_id: str, attempt: int, ack: Any) -> None:  # the consumers here only read
    raise AssertionError("not run here")


def _job_of(message: AckableMessage | bytes) -> list[Any]:
    data = message.data if isinstance(message, AckableMessage) else message
    return list(json.loads(data)["args"])


async def _started(settings: Settings) -> JobQueue:
    queue = JobQueue.for_settings(settings, _never)
    queue.broker.is_worker_process = True
    await queue.startup()
    return queue


def test_a_message_taken_but_never_acknowledged_goes_to_another_consumer(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_queue, "UNCLAIMED_REDELIVERY_SECONDS", 0.5)
    settings = _settings(tmp_path, server.url)

    async def scenario() -> None:
        producer, dying, healthy = [await _started(settings) for _ in range(3)]
        try:
            await producer.kick("job-1", 1)
            taken: AsyncIterator[Any] = dying.broker.listen()
            first = await asyncio.wait_for(anext(taken), 10)  # popped; its worker dies before the claim
            assert _job_of(first) == ["job-1", 1]
            again = await asyncio.wait_for(anext(healthy.broker.listen()), 10)
            assert _job_of(again) == ["job-1", 1]  # delivered again, to the other consumer
            assert isinstance(again, AckableMessage)
            await again.ack()  # claimed: now it is gone for good
            with server.client() as client:
                assert client.xlen(stream_key(PREFIX)) == 0
        finally:
            for queue in (producer, dying, healthy):
                await queue.shutdown()

    asyncio.run(scenario())


def test_a_consumer_outlasts_redis_losing_its_data_and_its_connections(server: RedisServer, tmp_path: Path) -> None:
    settings = _settings(tmp_path, server.url)

    async def scenario() -> None:
        producer, consumer = await _started(settings), await _started(settings)
        try:
            reading = consumer.broker.listen()
            waiting = asyncio.ensure_future(anext(reading))
            await asyncio.sleep(0.3)  # blocked in XREADGROUP
            with server.client() as client:
                client.flushall()  # the stream and its consumer group are gone
            server.kill_clients()
            await producer.kick("job-2", 1)
            message = await asyncio.wait_for(waiting, 20)
            assert _job_of(message) == ["job-2", 1]
        finally:
            await producer.shutdown()
            await consumer.shutdown()

    asyncio.run(scenario())


def test_a_requeue_redis_refused_is_sent_at_the_next_sweep(server: RedisServer, tmp_path: Path) -> None:
    """The sweeper hands a lapsed run back (record written), but the message cannot be sent: it must
    not wait for the queued job's 300 s resend deadline."""
    settings = _settings(tmp_path, server.url)
    settings.jobs_dir.mkdir(parents=True)
    unreachable = _settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")

    async def scenario() -> None:
        store = await RedisJobStore.open(server.url, PREFIX)
        down = JobQueue.for_settings(unreachable, _never)
        up = await _started(settings)
        lapsed = job("lapsed", status=JobStatus.running, attempt=1, lease_until=time.time() - 5)
        await store.insert(lapsed)

        async def announce(job_id: str) -> None:
            return None

        supervisor = Supervisor(settings, store, result_store(settings), down, announce, {})
        try:
            assert await supervisor.retry_or_fail(lapsed, "gone") == 1  # taken over; the message was refused
            requeued = await store.get("lapsed")
            assert requeued is not None and (requeued.status, requeued.attempt) == (JobStatus.queued, 2)
            with server.client() as client:
                assert client.xlen(stream_key(PREFIX)) == 0
            supervisor.queue = up  # Redis answers the queue again
            assert await supervisor.sweep() == 1
            message = await asyncio.wait_for(anext(up.broker.listen()), 10)
            assert _job_of(message) == ["lapsed", 2]
        finally:
            await up.shutdown()
            await store.close()

    asyncio.run(scenario())
