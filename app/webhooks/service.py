"""The webhooks facade the rest of the service talks to: one object per process, in `services.webhooks`.

The job runner calls exactly one thing, `await webhooks.job_finished(job)`, when a job reaches a
final status (whoever runs the job: today the in-process manager, later a task-queue worker).
That call only writes to the outbox, so it is cheap, idempotent (the webhook-id derives from the
job id) and never fails the job; the dispatcher does the sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from app.config import Settings
from app.core.models import BatchOptions, OrderInfo
from app.errors import ServiceError
from app.jobs.records import Job
from app.webhooks.dispatcher import Dispatcher, RetryPolicy
from app.webhooks.outbox import Delivery, Outbox, RedisOutbox, SqliteOutbox
from app.webhooks.payload import JobCallback, job_callback, watch_failed
from app.webhooks.signing import signer
from app.webhooks.urls import InvalidCallbackUrl, callback_client, validate_callback_url
from app.webhooks.watches import (
    STARTING_GRACE_SECONDS,
    WATCH_TTL_SECONDS,
    RedisWatches,
    SqliteWatches,
    Watch,
    WatchStatus,
    WatchStore,
    changed,
)

if TYPE_CHECKING:
    from app.wiring import Services

log = logging.getLogger("app.webhooks")

WATCH_TENDING_INTERVAL_SECONDS = 60.0


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

    @classmethod
    async def start(cls, settings: Settings, *, dispatch: bool = True) -> Webhooks:
        """Open the outbox and watch store (Redis when REDIS_URL is set, else SQLite) and start sending.

        Started before the job manager, whose recovery queues callbacks; `tend()` once it runs.
        """
        redis: aioredis.Redis | None = None
        outbox: Outbox
        watches: WatchStore
        if settings.redis_url is not None:
            redis = aioredis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
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
            callback_client(allow_private=settings.webhook_allow_private, timeout=settings.webhook_timeout_seconds),
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

    def tend(self, services: Services) -> None:
        """Tend the watches from now on (expire old ones, retry ones a dead process took): this starts
        jobs, so call it once `services.jobs` runs."""
        self._tasks.append(asyncio.create_task(self._tend_watches_forever(services), name="webhooks-watches"))

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
        payload = job_callback(job, self._base_url(job.public_base_url))
        await self._enqueue(job_webhook_id(job.job_id), job.callback_url, payload, job.job_id)

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

    async def _enqueue(self, webhook_id: str, url: str, payload: JobCallback, job_id: str | None) -> None:
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

    # -- watching orders --------------------------------------------------------------------------

    async def watch(
        self,
        order: OrderInfo,
        options: BatchOptions,
        callback_url: str | None,
        public_base_url: str,
        services: Services,
    ) -> Watch:
        """Record a watch on an order the caller just proved exists; if the order is already done
        processing, start its job at once (Autoenhance will not say so again)."""
        now = time.time()
        watch = Watch(
            watch_id=str(uuid.uuid4()),
            order_id=order.order_id,
            options=options.as_dict(),
            callback_url=callback_url,
            public_base_url=public_base_url,
            created_at=now,
            updated_at=now,
        )
        await self.watches.add(watch)
        log.info("order watched", extra={"watch_id": watch.watch_id, "order_id": order.order_id})
        if order.images and not order.is_processing:
            await self.order_processed(order.order_id, services, order=order)
        return await self.watches.get(watch.watch_id) or watch

    async def order_processed(self, order_id: str, services: Services, order: OrderInfo | None = None) -> list[Watch]:
        """Autoenhance says the order finished processing: start a job for each watch on it."""
        taken = await self.watches.take(order_id, time.time())
        if not taken:
            return []
        results = []
        try:
            if order is None:
                order = await services.client.get_order(order_id)
        except ServiceError as exc:
            return [await self._watch_failed(w, exc.message) for w in taken]
        for watch in taken:
            try:
                job = await services.jobs.create(
                    order,
                    BatchOptions.from_dict(watch.options),
                    callback_url=watch.callback_url,
                    public_base_url=watch.public_base_url,
                )
            except ServiceError as exc:
                results.append(await self._watch_failed(watch, exc.message))
                continue
            started = changed(watch, status=WatchStatus.started, job_id=job.job_id, updated_at=time.time())
            await self.watches.save(started)
            log.info("watched order started", extra={"watch_id": watch.watch_id, "job_id": job.job_id})
            results.append(started)
        return results

    async def _watch_failed(self, watch: Watch, reason: str) -> Watch:
        failed = changed(watch, status=WatchStatus.failed, error=reason, updated_at=time.time())
        await self.watches.save(failed)
        log.warning("watched order could not start", extra={"watch_id": watch.watch_id, "error": reason})
        if watch.callback_url:
            payload = watch_failed(watch.order_id, watch.watch_id, reason, watch.created_at)
            await self._enqueue(f"msg_watch_{watch.watch_id}", watch.callback_url, payload, None)
        return failed

    async def tend_watches(self, services: Services, now: float | None = None) -> list[Watch]:
        """Forget watches past their TTL; retry the ones a process took and died before starting."""
        now = time.time() if now is None else now
        await self.watches.expire(now - WATCH_TTL_SECONDS)
        results: list[Watch] = []
        for order_id in await self.watches.requeue_stale(now - STARTING_GRACE_SECONDS):
            log.warning("retrying a watch left starting", extra={"order_id": order_id})
            results += await self.order_processed(order_id, services)
        return results

    async def _tend_watches_forever(self, services: Services) -> None:
        while True:
            try:
                await self.tend_watches(services)
            except Exception:
                log.exception("tending watches failed")
            await asyncio.sleep(WATCH_TENDING_INTERVAL_SECONDS)
