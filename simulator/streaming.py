"""The ASGI response that streams an asset: exact Content-Length, chunked sends, stall/truncate.

It owns the download slot for its whole life and gives it back when the stream ends, is cut,
or the client goes away, so `concurrent_downloads` measures real overlap. On a normal end the
slot is given back just before the last message, so a client that has read the whole body
already sees the counters settled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class AssetStream:
    """Send `chunks` (totalling `total` bytes) with optional stall and truncation points."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        total: int,
        content_type: str,
        *,
        on_close: Callable[[int], None],
        stall_at: int | None = None,
        stall_seconds: float = 0.0,
        truncate_at: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.total = total
        self.content_type = content_type
        self.on_close = on_close
        self.stall_at = stall_at
        self.stall_seconds = stall_seconds
        # a truncation always loses at least one byte, whatever after_bytes says
        self.truncate_at = None if truncate_at is None else min(truncate_at, max(total - 1, 0))
        self.headers = headers or {}
        self.sent = 0
        self._closed = False

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.on_close(self.sent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            headers = [
                (b"content-type", self.content_type.encode("latin-1")),
                (b"content-length", str(self.total).encode("latin-1")),
                *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if scope.get("method") == "HEAD":
                self._close()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._body(send)
                group.cancel_scope.cancel()
        finally:
            self._close()

    async def _body(self, send: Send) -> None:
        stall_pending = self.stall_at is not None
        for chunk in self.chunks:
            while True:
                limit = len(chunk)
                if self.truncate_at is not None:
                    limit = min(limit, self.truncate_at - self.sent)
                if stall_pending and self.stall_at is not None:
                    limit = min(limit, self.stall_at - self.sent)
                piece, chunk = chunk[:limit], chunk[limit:]
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    self.sent += len(piece)
                if stall_pending and self.sent == self.stall_at:
                    stall_pending = False
                    await anyio.sleep(self.stall_seconds)
                if self.truncate_at is not None and self.sent >= self.truncate_at:
                    self._close()
                    return  # never finish the response: the server closes the connection short
                if not chunk:
                    break
        self._close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
