"""The job queue, on taskiq: an in-memory broker by default, a Redis list (taskiq-redis) with REDIS_URL.

A message only says "run attempt N of job X"; everything else (status, progress, result, webhook)
is in the job store, which stays authoritative. A duplicated or stale message is harmless: the
runner claims the job with a conditional update (`queued` and that attempt) and does nothing if the
claim fails. A lost message (a worker killed between popping it and claiming the job) is the one gap
the store cannot see; ENGINEERING_LOG.md says why it is accepted.

In-memory: `kick` runs the task as a task of this same process (the single box).
Redis: API instances only push; `python -m app.worker` (and API instances when JOB_WORKERS_IN_API)
consume with `taskiq.api.run_receiver_task`, taking at most as many messages as they have job slots.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, InMemoryBroker
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker

from app.config import Settings

TASK_NAME = "autoenhance_batch.run_job"

Runner = Callable[[str, int], Awaitable[None]]


class JobQueue:
    """One broker per process, with the single `run_job(job_id, attempt)` task bound to a runner."""

    def __init__(self, broker: AsyncBroker, runner: Runner) -> None:
        self.broker = broker

        async def run_job(job_id: str, attempt: int) -> None:
            await runner(job_id, attempt)

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
            broker = ListQueueBroker(
                settings.redis_url.get_secret_value(), queue_name=f"{settings.redis_key_prefix}jobs:queue"
            )
        return cls(broker, runner)

    async def startup(self) -> None:
        await self.broker.startup()

    async def shutdown(self) -> None:
        await self.broker.shutdown()

    async def kick(self, job_id: str, attempt: int) -> None:
        await self._task.kiq(job_id, attempt)

    async def consume(self, slots: int) -> None:
        """Take messages from Redis and run them, at most `slots` at once, until cancelled."""
        await run_receiver_task(self.broker, max_async_tasks=slots, max_prefetch=0, propagate_exceptions=False)
