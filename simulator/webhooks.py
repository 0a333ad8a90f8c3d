"""Autoenhance's own webhook, simulated: POST events to a configured URL as images finish processing.

The real API sends, for each processed image, `{"event": "image_processed", "image_id", "error",
"order_id", "order_is_processing"}` with the configured authentication value, and
`{"event": "webhook_updated"}` when the URL is saved (reference doc, section 4). The header that
carries the value is undocumented; like the third-party handlers we know of, we use
`Authorization`.

The simulator's lifecycle is lazy (an image becomes "processed" when read after its time), so
events need a clock: `Notifier` is a background task (started by the app's lifespan) that, only
while a webhook is configured, advances images whose processing time has passed and sends their
events. One attempt each, as Autoenhance documents no retries; outcomes are counted in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from simulator.records import WebhookTarget
from simulator.state import SimulatorState

log = logging.getLogger("simulator.webhooks")

TICK_SECONDS = 0.05


class Notifier:
    """Drains `state.webhook_outbox()` to the configured URL, every TICK_SECONDS."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False, trust_env=False) as client:
            while True:
                target = self.state.webhook
                if target is not None:
                    for event in self.state.webhook_outbox():
                        await self._send(client, target, event)
                await asyncio.sleep(TICK_SECONDS)

    async def _send(self, client: httpx.AsyncClient, target: WebhookTarget, event: dict[str, Any]) -> None:
        headers = {"Authorization": target.token} if target.token is not None else {}
        try:
            response = await client.post(target.url, json=event, headers=headers)
            ok = response.is_success
        except httpx.HTTPError as exc:
            log.warning("webhook to %s failed: %s", target.url, exc)
            ok = False
        self.state.count("webhooks_sent" if ok else "webhooks_failed")
        self.state.record_webhook(event, ok)


@contextlib.asynccontextmanager
async def notifier_running(state: SimulatorState) -> AsyncIterator[None]:
    task = asyncio.create_task(Notifier(state).run(), name="simulator-webhooks")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
