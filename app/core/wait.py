"""`wait=true`: poll an order until no image is still being enhanced, then download.

Autoenhance enhances asynchronously; a batch asked for right after upload finds images `waiting`
or `processing`, and without `wait` reports them as not ready. With `wait=true` the order is polled
with exponential backoff (1 s doubling to 10 s, with jitter) until none is, or until `wait_timeout`
seconds have passed: then the batch proceeds with what is ready, and every image still processing
is reported as such, saying that the wait ran out. The batch and job routes only pass the options
(their query parameters are read in app/api/deps.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.core.models import OrderInfo
from app.errors import ServiceError

if TYPE_CHECKING:  # the command line reads WaitOptions without loading the HTTP client stack
    from app.core.upstream.client import AutoenhanceClient

log = logging.getLogger("app.readiness")

MAX_WAIT_SECONDS = 600.0
FIRST_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 10.0
PENDING = ("waiting", "processing")


@dataclasses.dataclass(frozen=True)
class WaitOptions:
    wait: bool = False
    timeout: float = 60.0


class CallerGone(ServiceError):
    """The caller hung up while we waited for the order; nobody is left to answer."""

    status_code = 499
    message = "Client closed the request"


def _pending(order: OrderInfo) -> int:
    return sum((image.status or "").lower() in PENDING for image in order.images)


async def wait_until_ready(
    client: AutoenhanceClient,
    order: OrderInfo,
    options: WaitOptions,
    *,
    gone: Callable[[], Awaitable[bool]] | None = None,
    first_poll: float = FIRST_POLL_SECONDS,
) -> OrderInfo:
    """The order once nothing is pending, or at the deadline with the pending images marked as such."""
    if not options.wait or not _pending(order):
        return order
    started = time.monotonic()
    deadline = started + options.timeout
    delay = first_poll
    polls = 0
    while _pending(order):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(delay * random.uniform(0.8, 1.2), remaining))
        if gone is not None and await gone():
            raise CallerGone()
        order = await client.get_order(order.order_id, order.sort)
        polls += 1
        delay = min(delay * 2, MAX_POLL_SECONDS)
    waited = time.monotonic() - started
    pending = _pending(order)
    log.info(
        "waited for order", extra={"order_id": order.order_id, "seconds": round(waited, 2), "polls": polls, "pending": pending}
    )
    if not pending:
        return order
    note = f"still not ready after waiting {options.timeout:g} s (wait_timeout); served what was ready"
    images = [
        dataclasses.replace(image, status_reason=note) if (image.status or "").lower() in PENDING else image
        for image in order.images
    ]
    return dataclasses.replace(order, images=images)
