"""The job queue, on taskiq: an in-memory broker by default, a Redis stream (taskiq-redis) with REDIS_URL.

A message only says "run attempt N of job X"; everything else (status, progress, result, webhook)
is in the job store, which stays authoritative. A duplicated or stale message is harmless: the
runner claims the job with a conditional update (`queued` and that attempt) and does nothing if the
claim fails.

With Redis a message is never lost between its delivery and its claim: it stays in the stream's
consumer group, unacknowledged, until the runner has an answer from the claim (won, or someone else
has the run), and only then is acknowledged and deleted. A worker that dies (or loses Redis) before
that leaves it pending; any consumer takes it over after UNCLAIMED_REDELIVERY_SECONDS (XAUTOCLAIM).
Redis connection errors while waiting for messages are waited out with backoff, and a consumer group
lost with Redis's data is declared again.

In-memory: `kick` runs the task as a task of this same process (the single box).
Redis: API instances only push; `python -m app.worker` (and API instances when JOB_WORKERS_IN_API)
consume with `taskiq.api.run_receiver_task`, taking at most as many messages as they have job slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError
from taskiq import AckableMessage, AsyncBroker, AsyncTaskiqDecoratedTask, Context, InMemoryBroker, TaskiqDepends
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from app.config import Settings
from app.core.redis_client import cancel_safe, connection_options

log = logging.getLogger("app.jobs")

TASK_NAME = "autoenhance_batch.run_job"
CONSUMER_GROUP = "workers"
UNCLAIMED_REDELIVERY_SECONDS = 30.0
"""A message delivered this long ago and still unacknowledged (its consumer died, or could not reach
Redis to claim the job) goes to the next consumer that asks."""
READ_BLOCK_MS = 2000
STREAM_MAX_MESSAGES = 20_000
"""The stream is trimmed (approximately) beyond this many entries. Acknowledged messages are deleted
at once, so it only holds messages not yet claimed: far more than MAX_SHARED_QUEUED_JOBS."""
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0

Ack = Callable[[], Awaitable[None]]
"""Acknowledges the message being run (a no-op for the in-memory queue)."""
Runner = Callable[[str, int, Ack], Awaitable[None]]


class JobStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, made to survive Redis: reads one message per free slot, takes
    over messages left unacknowledged, outlasts connection errors, and deletes what it acknowledges."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        cancel_safe(self.connection_pool, url)  # its pool comes from from_url too

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        pause = RECONNECT_FIRST_SECONDS
        while True:
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    while True:
                        message = await self._next(redis)
                        pause = RECONNECT_FIRST_SECONDS
                        if message is not None:
                            yield message
            except (ConnectionError, TimeoutError, OSError) as exc:
                log.warning("job queue: Redis unreachable; reading again", extra={"error": repr(exc)})
            except ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):  # the stream or its group was deleted
                    raise
                log.warning("job queue: consumer group missing (Redis lost its data?); declaring it again")
                with contextlib.suppress(RedisError):
                    await self._declare_consumer_group()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_SECONDS)

    async def _next(self, redis: Redis) -> AckableMessage | None:
        """A message left unacknowledged too long by any consumer, else a new one (waiting up to READ_BLOCK_MS)."""
        _, taken, *_ = await redis.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=int(UNCLAIMED_REDELIVERY_SECONDS * 1000),
            start_id="0-0",
            count=1,
        )
        if not taken:
            fetched: Any = await redis.xreadgroup(
                self.consumer_group_name, self.consumer_name, {self.queue_name: ">"}, count=1, block=self.block
            )
            taken = fetched[0][1] if fetched else []  # RESP2: [[stream, [(id, fields)]]]
        for message_id, fields in taken:
            if isinstance(fields, dict) and b"data" in fields:  # an entry trimmed away has no fields
                return AckableMessage(data=fields[b"data"], ack=self._ack_generator(message_id, self.queue_name))
        return None

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with Redis(connection_pool=self.connection_pool) as redis, redis.pipeline(transaction=True) as pipe:
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()

        return ack

    async def shutdown(self) -> None:
        """Leave the consumer group if nothing delivered to this consumer is still unacknowledged
        (otherwise the group keeps it, so another consumer takes the messages over)."""
        if self.is_worker_process:
            with contextlib.suppress(RedisError, OSError):
                async with Redis(connection_pool=self.connection_pool) as redis:
                    mine = await redis.xpending_range(
                        self.queue_name, self.consumer_group_name, "-", "+", 1, consumername=self.consumer_name
                    )
                    if not mine:
                        await redis.xgroup_delconsumer(self.queue_name, self.consumer_group_name, self.consumer_name)
        await super().shutdown()


class JobQueue:
    """One broker per process, with the single `run_job(job_id, attempt)` task bound to a runner."""

    def __init__(self, broker: AsyncBroker, runner: Runner) -> None:
        self.broker = broker

        async def run_job(job_id: str, attempt: int, context: Annotated[Context, TaskiqDepends()]) -> None:
            async def ack() -> None:
                if context.is_ackable:
                    await context.ack()

            await runner(job_id, attempt, ack)

        self._task: AsyncTaskiqDecoratedTask[Any, Any] = broker.register_task(run_job, task_name=TASK_NAME)  # type: ignore[arg-type]

    @property
    def distributed(self) -> bool:
        return not isinstance(self.broker, InMemoryBroker)

    @classmethod
    def for_settings(cls, settings: Settings, runner: Runner) -> JobQueue:
        broker: AsyncBroker
        if settings.redis_url is None:
            broker = InMemoryBroker(max_async_tasks=10_000, propagate_exceptions=False)
        else:
            url = settings.redis_url.get_secret_value()
            broker = JobStreamBroker(
                url,
                queue_name=stream_key(settings.redis_key_prefix),
                consumer_group_name=CONSUMER_GROUP,
                consumer_id="0",  # a group declared after messages arrived (Redis lost its data) still reads them
                xread_block=READ_BLOCK_MS,
                maxlen=STREAM_MAX_MESSAGES,
                **connection_options(url),
            )
        return cls(broker, runner)

    async def startup(self) -> None:
        await self.broker.startup()

    async def shutdown(self) -> None:
        await self.broker.shutdown()

    async def kick(self, job_id: str, attempt: int) -> None:
        await self._task.kiq(job_id, attempt)

    async def consume(self, slots: int) -> None:
        """Take messages from Redis and run them, at most `slots` at once, until cancelled. The task
        acknowledges its message itself, once the job's claim has an answer (AcknowledgeType.MANUAL)."""
        await run_receiver_task(
            self.broker,
            max_async_tasks=slots,
            max_prefetch=0,
            propagate_exceptions=False,
            ack_time=AcknowledgeType.MANUAL,
        )


def stream_key(prefix: str) -> str:
    return f"{prefix}jobs:stream"
