"""Archive responses whose reader stops taking bytes are cut, not kept forever.

A response's `send` returns once the server has room for the next piece (uvicorn waits for its
write buffer to drain below its high-water mark first). A reader that takes nothing, or a few
bytes a second, leaves that wait pending. So every send of an archive response runs under
STREAM_STALL_TIMEOUT_SECONDS: past it the response is cut (StreamStalled, an OSError, which the
responses already treat as a caller that is gone: the batch, its spools and its claim are released).

The client must see a broken transfer, never a shorter archive that looks whole, so the response is
never ended normally: the server closes the connection without the chunked body's last chunk (or
short of its Content-Length). Under `python -m app serve` the project's protocol (app/server.py)
also hands the response an `abort` in its scope extensions: the connection is reset at once and the
bytes still buffered for the stalled reader are dropped instead of waiting for a reader who never
reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import Message, Scope, Send

log = logging.getLogger("app.stall")

ABORT_EXTENSION = "autoenhance.abort"
"""Scope extension: a callable that resets the connection (set by app/server.py's protocol)."""


class StreamStalled(ConnectionAbortedError):
    """The reader took nothing for the stall deadline: the response is being cut."""


def stall_seconds(scope: Scope) -> float | None:
    """STREAM_STALL_TIMEOUT_SECONDS of the app serving `scope` (None outside the service: no deadline)."""
    app: Any = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    return getattr(settings, "stream_stall_timeout_seconds", None)


def guarded(send: Send, scope: Scope) -> Send:
    """`send`, each call of which must complete within the stall deadline, else StreamStalled."""
    seconds = stall_seconds(scope)
    if seconds is None:
        return send

    async def send_or_cut(message: Message) -> None:
        try:
            async with asyncio.timeout(seconds):
                await send(message)
        except TimeoutError:
            log.warning("archive response cut: its reader took nothing for %g s (STREAM_STALL_TIMEOUT_SECONDS)", seconds)
            abort: Callable[[], None] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
            if abort is not None:
                abort()
            raise StreamStalled(f"no progress for {seconds} s") from None

    return send_or_cut
