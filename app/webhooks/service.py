"""The webhooks facade the rest of the service talks to: one object per process, in `services.webhooks`.

The job system calls exactly one thing, `await webhooks.job_finished(job)` (it holds this object as
its `JobListener`), when a job reaches a final status, whoever runs it (an API process or a worker).
That call only writes to the outbox, so it is cheap, idempotent (the webhook-id derives from the
job id) and never fails the job; the dispatcher does the sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from app.config import Settings
from app.core.delivery.sharing import ShareSigner, load_secret
from app.core.redis_client import connect
from app.jobs.records import Job
from app.webhooks.dispatcher import MAX_IN_FLIGHT, Dispatcher, RetryPolicy
from app.webhooks.outbox import Delivery, Outbox, RedisOutbox, SqliteOutbox
from app.webhooks.payload import JobCallback, job_callback
from app.webhooks.signing import signer
from app.webhooks.urls import InvalidCallbackUrl, callback_client, validate_callback_url
from app.webhooks.watches import RedisWatches, SqliteWatches, WatchStore

log = logging.getLogger("app.webhooks")


def job_webhook_id(job_id: str) -> str:
    """One id per job, forever: a repeated job_finished (say, a task retried) queues nothing new."""
    return f"msg_job_{job_id}"


class Webhooks:
    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        watches: WatchStore,
        dispatcher: Dispatcher,
        redis: aioredis.Redis | None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.watches = watches
        self.dispatcher = dispatcher
        self._redis = redis
        self._tasks: list[asyncio.Task[None]] = []
        shared = settings.share_secret.get_secret_value() if settings.share_secret else None
        self.signer = ShareSigner(load_secret(shared, settings.data_dir))

    @classmethod
    async def start(cls, settings: Settings, *, dispatch: bool = True) -> Webhooks:
        """Open the outbox and watch store (Redis when REDIS_URL is set, else SQLite) and start sending.

        Started before the job manager, whose recovery queues callbacks (app/webhooks/watcher.py, which
        starts jobs, comes after it).
        """
        redis: aioredis.Redis | None = None
        outbox: Outbox
        watches: WatchStore
        if settings.redis_url is not None:
            redis = connect(settings.redis_url.get_secret_value())
            outbox = RedisOutbox(redis, settings.redis_key_prefix)
            watches = RedisWatches(redis, settings.redis_key_prefix)
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            path = settings.data_dir / "webhooks.sqlite3"
            outbox = await SqliteOutbox.open(path)
            watches = await SqliteWatches.open(path)
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        dispatcher = Dispatcher(
            outbox,
            callback_client(
                allow_private=settings.webhook_allow_private,
                timeout=settings.webhook_timeout_seconds,
                max_connections=MAX_IN_FLIGHT,
            ),
            signer(secret) if secret else None,
            RetryPolicy(
                base=settings.webhook_retry_base_seconds,
                max_delay=settings.webhook_retry_max_delay_seconds,
                window=settings.webhook_retry_window_seconds,
            ),
            timeout=settings.webhook_timeout_seconds,
        )
        webhooks = cls(settings, outbox, watches, dispatcher, redis)
        if dispatch:
            webhooks._tasks.append(asyncio.create_task(dispatcher.run_forever(), name="webhooks-dispatch"))
        return webhooks

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dispatcher.client.aclose()
        await self.outbox.close()
        await self.watches.close()
        if self._redis is not None:
            await self._redis.aclose()

    # -- callbacks --------------------------------------------------------------------------------

    async def check_callback_url(self, url: str) -> str:
        """A caller's callback URL, validated (422 otherwise); callbacks need WEBHOOK_SECRET."""
        if self.settings.webhook_secret is None:
            raise InvalidCallbackUrl(
                "callback_url is not available: this service has no WEBHOOK_SECRET to sign callbacks with"
            )
        return await validate_callback_url(url, allow_private=self.settings.webhook_allow_private)

    async def job_finished(self, job: Job) -> None:
        """THE call point for job runners: queue the job's callback, if it has one. Idempotent."""
        if not job.callback_url:
            return
        tokens = [self.signer.make(job.job_id, s["share_id"], s["expires_at"]) for s in job.active_shares()]
        payload = job_callback(job, self._base_url(job.public_base_url), share_tokens=tokens)
        await self.enqueue(job_webhook_id(job.job_id), job.callback_url, payload, job.job_id)

    async def job_webhook_view(self, job: Job) -> dict[str, Any] | None:
        """The `webhook` part of GET /jobs/{id}: how the job's callback is faring (None without one)."""
        if not job.callback_url:
            return None
        sent = await self.outbox.get(job_webhook_id(job.job_id))
        if sent is None:
            return {
                "callback_url": job.callback_url,
                "webhook_id": None,
                "status": "waiting_for_job",
                "attempts": 0,
                "last_status_code": None,
                "last_error": None,
            }
        return {"callback_url": job.callback_url, **sent.view()}

    async def enqueue(self, webhook_id: str, url: str, payload: JobCallback, job_id: str | None) -> None:
        now = time.time()
        delivery = Delivery(
            webhook_id=webhook_id,
            url=url,
            body=payload.model_dump_json(),
            job_id=job_id,
            created_at=now,
            next_attempt_at=now,
        )
        if await self.outbox.add(delivery):
            log.info("webhook queued", extra={"webhook_id": webhook_id, "job_id": job_id, "event": payload.event})
            self.dispatcher.wake()

    def _base_url(self, recorded: str | None) -> str:
        return self.settings.public_base_url or recorded or ""
