"""Watching orders: "when Autoenhance says this order is done, start its job (and call me back)".

Built after the job manager, with it: watches start jobs, and jobs report to the webhooks facade,
so this piece (which needs both) is what breaks the cycle rather than a reference set later.
Expires old watches and retries the ones a dead process took, every WATCH_TENDING_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from app.core.models import BatchOptions, OrderInfo
from app.core.upstream.client import AutoenhanceClient
from app.errors import ServiceError
from app.jobs.manager import JobManager
from app.webhooks.payload import watch_failed
from app.webhooks.service import Webhooks
from app.webhooks.watches import STARTING_GRACE_SECONDS, WATCH_TTL_SECONDS, Watch, WatchStatus, changed

log = logging.getLogger("app.webhooks")

WATCH_TENDING_INTERVAL_SECONDS = 60.0


class OrderWatcher:
    def __init__(self, webhooks: Webhooks, jobs: JobManager, client: AutoenhanceClient) -> None:
        self.webhooks = webhooks
        self.watches = webhooks.watches
        self.jobs = jobs
        self.client = client
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, webhooks: Webhooks, jobs: JobManager, client: AutoenhanceClient) -> OrderWatcher:
        """Watch, and tend the watches from now on (this starts jobs: the manager must run)."""
        watcher = cls(webhooks, jobs, client)
        watcher._task = asyncio.create_task(watcher._tend_forever(), name="webhooks-watches")
        return watcher

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def watch(
        self, order: OrderInfo, options: BatchOptions, callback_url: str | None, public_base_url: str
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
            await self.order_processed(order.order_id, order=order)
        return await self.watches.get(watch.watch_id) or watch

    async def order_processed(self, order_id: str, order: OrderInfo | None = None) -> list[Watch]:
        """Autoenhance says the order finished processing: start a job for each watch on it."""
        taken = await self.watches.take(order_id, time.time())
        if not taken:
            return []
        results = []
        try:
            if order is None:
                order = await self.client.get_order(order_id)
        except ServiceError as exc:
            return [await self._watch_failed(w, exc.message) for w in taken]
        for watch in taken:
            try:
                job = await self.jobs.create(
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
            await self.webhooks.enqueue(f"msg_watch_{watch.watch_id}", watch.callback_url, payload, None)
        return failed

    async def tend(self, now: float | None = None) -> list[Watch]:
        """Forget watches past their TTL; retry the ones a process took and died before starting."""
        now = time.time() if now is None else now
        await self.watches.expire(now - WATCH_TTL_SECONDS)
        results: list[Watch] = []
        for order_id in await self.watches.requeue_stale(now - STARTING_GRACE_SECONDS):
            log.warning("retrying a watch left starting", extra={"order_id": order_id})
            results += await self.order_processed(order_id)
        return results

    async def _tend_forever(self) -> None:
        while True:
            try:
                await self.tend()
            except Exception:
                log.exception("tending watches failed")
            await asyncio.sleep(WATCH_TENDING_INTERVAL_SECONDS)
