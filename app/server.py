"""How the service is served: uvicorn settings that hold against slow and huge requests.

uvicorn's defaults let a client hold a connection open forever by sending its headers slowly (no
timer runs until the first request is complete), and its default parser (httptools) takes a
header block of any size into memory. `python -m app serve` (which `make run` and render.yaml
use) therefore runs uvicorn with:

- `GuardedH11Protocol`: h11 with a header block cap (`MAX_HEADER_BYTES`; more is a 400 and the
  connection closes) and a deadline for every request's headers (`HEADER_TIMEOUT_SECONDS` from
  the connection's first byte or the previous response: a connection that has not finished its
  headers by then is closed);
- `KEEP_ALIVE_SECONDS` for idle connections between requests;
- `--limit-concurrency` (connections plus tasks): over it, a new request gets a 503 at once.

A slow *body* is the application's business (app/api/intake.py, BODY_TIMEOUT_SECONDS). What a
front proxy should add is in README "Resilience".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("app.server")

MAX_HEADER_BYTES = 64 * 1024
"""The request line and headers together (browsers send under 8 KiB; nginx's default cap is 8-32 KiB)."""
HEADER_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
LIMIT_CONCURRENCY = 1000


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers."""

    header_timeout = HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the request line and headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.warning("closed a connection whose request headers took over %g s", self.header_timeout)
            self.transport.close()


def server_options(*, limit_concurrency: int = LIMIT_CONCURRENCY) -> dict[str, Any]:
    """The uvicorn.Config / uvicorn.run keyword arguments above."""
    return {
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": limit_concurrency,
    }
