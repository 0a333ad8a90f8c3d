"""How the service is served: uvicorn settings that hold against slow and huge requests.

uvicorn's defaults let a client hold a connection open forever by sending its headers slowly (no
timer runs until a request's headers are complete), and its fast parser (httptools, which `make
run` and the benchmarks use with uvloop) takes a header block of any size into memory.
`python -m app serve` (which `make run` and render.yaml start) therefore runs uvicorn with uvloop
and `GuardedHttpToolsProtocol`: httptools, plus

- a cap on each request's head (request line and headers, `MAX_HEADER_BYTES`): past it, 431 and
  the connection closes, having buffered at most the cap plus one read;
- a deadline for each request's head (`HEADER_TIMEOUT_SECONDS` from the connection's first moment,
  or from the first byte of the next request on a kept-alive connection): then it is closed;
- `KEEP_ALIVE_SECONDS` for idle connections between requests;
- `limit_concurrency` (connections plus tasks): over it, a new request gets a 503 at once.

A slow *body* is the application's business (app/api/intake.py, BODY_TIMEOUT_SECONDS). What a
front proxy should add is in docs/operations.md, "Resilience".
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.api.stall import ABORT_EXTENSION

log = logging.getLogger("app.server")

MAX_HEADER_BYTES = 64 * 1024
"""The request line and headers together (browsers send under 8 KiB; nginx's default cap is 8-32 KiB)."""
HEADER_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
LIMIT_CONCURRENCY = 1000


FRAME_DIRECTLY = 16 * 1024
"""Body pieces from this size on are framed without a copy (smaller ones: one write is cheaper)."""


class FramedCycle(RequestResponseCycle):
    """uvicorn's request cycle, minus one copy of every byte of a chunked response.

    A streamed ZIP has no Content-Length (its size is known only at its end), so it goes out in
    chunked transfer coding, and uvicorn frames each piece as `b"".join([size, body, CRLF])`: a
    fresh copy of the whole body, the largest single cost on the byte path after the kernel's own
    (`make profile`). Here a large piece goes out as three buffers handed to the transport's
    `writelines`, which uvloop sends with one writev(2), bytes untouched. Every other message,
    and the last one (which closes the response), takes uvicorn's own path.

    It also offers the application an `abort` (scope extension ABORT_EXTENSION): a response cut
    because its reader stalled (app/api/stall.py) resets the connection at once. uvicorn's own
    close would first wait to flush what is buffered, which a reader who reads nothing never takes.
    """

    async def run_asgi(self, app: Any) -> None:
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions[ABORT_EXTENSION] = self.abort
        await super().run_asgi(app)

    def abort(self) -> None:
        """Reset the connection, dropping what is buffered for it; the application sees a disconnect."""
        self.disconnected = True
        self.transport.abort()
        self.message_event.set()

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "http.response.body"
            and self.chunked_encoding
            and self.response_started
            and not self.response_complete
            and message.get("more_body", False)
            and len(body := message.get("body", b"")) >= FRAME_DIRECTLY
            and self.scope["method"] != "HEAD"
        ):
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if not self.disconnected:
                self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            return
        await super().send(message)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size cap and a deadline on each request's head.

    Two counts, because httptools reports a header only once it is whole: the bytes received while
    a head is incomplete (a header that never ends), and the parsed request line and headers (a
    head that arrives whole in one read). Either over the cap: 431, close, and no request starts.
    """

    header_timeout = HEADER_TIMEOUT_SECONDS
    max_head_bytes = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._in_head = True
        self._head_bytes = 0
        self._parsed_bytes = 0
        self._too_big = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._header_timer is None:
                self._arm()  # the first bytes of a request on a kept-alive connection
            self._head_bytes += len(data)
        super().data_received(data)
        over = self._too_big or (self._in_head and self._head_bytes > self.max_head_bytes)
        if over and not self.transport.is_closing():
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_bytes = 0
        self._too_big = False

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        self._too_big = self._too_big or self._parsed_bytes > self.max_head_bytes
        if not self._too_big:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4
        self._too_big = self._too_big or self._parsed_bytes > self.max_head_bytes
        if not self._too_big:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if not self._too_big:  # too big: no request starts; data_received answers 431
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_big:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._too_big:
            return
        super().on_message_complete()
        self._in_head = True  # whatever comes next is the next request's head
        self._head_bytes = 0

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = FramedCycle  # same object, same state: only `send` differs (see FramedCycle)
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _head_too_slow(self) -> None:
        self._header_timer = None
        if self._in_head and not self.transport.is_closing():
            log.warning("closed a connection whose request headers took over %g s", self.header_timeout)
            self.transport.close()

    def _refuse_head(self) -> None:
        log.warning("refused a request head over %d bytes", self.max_head_bytes)
        if self.cycle is None or self.cycle.response_complete:  # else a response is on the wire: just close
            body = json.dumps({"detail": f"The request line and headers are over {self.max_head_bytes} bytes"})
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}".encode()
            )
        self.transport.close()


def server_options(*, limit_concurrency: int = LIMIT_CONCURRENCY) -> dict[str, Any]:
    """The uvicorn.Config / uvicorn.run keyword arguments above."""
    return {
        "loop": "uvloop",
        "http": GuardedHttpToolsProtocol,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": limit_concurrency,
    }
