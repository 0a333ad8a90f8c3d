"""A real HTTP endpoint for callbacks: records every POST and answers what the test planned.

Served on loopback by `tests.servers.serve`, so deliveries go through the service's real client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.servers import serve

SECRET = "whsec_" + base64.b64encode(b"autoenhance-batch-test-secret-32b").decode()
"""The WEBHOOK_SECRET tests configure, in the Standard Webhooks `whsec_<base64>` form."""

FAST_RETRIES: dict[str, Any] = {
    "webhook_secret": SECRET,
    "webhook_allow_private": True,  # the receiver is on loopback
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_delay_seconds": 0.2,
    "webhook_retry_window_seconds": 30,
}
"""Service settings for callbacks to this receiver: its secret, loopback allowed, retries in tenths of a second."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def verified(self, secret: str = SECRET) -> dict[str, Any]:
        """The payload, after checking the signature with the reference library (raises if wrong)."""
        data: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return data


@dataclass
class Receiver:
    """`plan`: status codes answered in order, then `default`. `location` is sent with 3xx answers."""

    plan: list[int] = field(default_factory=list)
    default: int = 200
    location: str | None = None
    delays: list[float] = field(default_factory=list)
    """Seconds to wait before answering, per request in order (then none)."""
    url: str = ""
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self.received.append(Received(request.url.path, dict(request.headers), body, time.time()))
                status = self.plan.pop(0) if self.plan else self.default
                delay = self.delays.pop(0) if self.delays else 0.0
            if delay:
                await asyncio.sleep(delay)
            headers = {"Location": self.location} if self.location and 300 <= status < 400 else None
            return JSONResponse({"ok": 200 <= status < 300}, status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 15.0, path: str | None = None) -> list[Received]:
        """The first `count` requests (to `path`, if given); fails if they do not arrive in time."""
        deadline = time.monotonic() + timeout
        while True:
            got = [r for r in self.received if path is None or r.path == path]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"expected {count} callbacks, got {len(got)}: {got}"
            time.sleep(0.02)


@contextlib.contextmanager
def serving(hooks: Receiver | None = None) -> Iterator[Receiver]:
    """A receiver served on a loopback port (its `url` set) for the length of the block."""
    hooks = hooks or Receiver()
    with serve(hooks.app()) as url:
        hooks.url = url
        yield hooks


@dataclass
class Exchange:
    """One connection to a TricklingReceiver: when it opened, when the client hung up, bytes trickled."""

    opened: float
    closed: float | None = None
    trickled: int = 0


class TricklingReceiver:
    """A raw-socket callback receiver that reads the request, then sends its response head one byte
    a second, for ever (a status line, then header after header), until the client hangs up.

    What httpx's per-phase timeouts cannot catch: every byte resets the read timeout. Each
    connection is recorded as an Exchange, so a test can see when the sender gave up on it.
    """

    HEAD = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: 1\r\n" * 10_000

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, name="trickling-receiver", daemon=True)

    def __enter__(self) -> TricklingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            _read_request(conn)
            exchange = Exchange(opened=time.time())
            with self._lock:
                self.exchanges.append(exchange)
            conn.settimeout(1.0)  # the pace: one byte, then up to a second listening for the hang-up
            for byte in self.HEAD:
                if self._stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                    exchange.trickled += 1
                    if conn.recv(1) == b"":  # the client hung up
                        break
                except TimeoutError:
                    continue
                except OSError:  # reset by the client
                    break
            exchange.closed = time.time()

    def wait_for(self, count: int, *, closed: bool = False, timeout: float = 30.0) -> list[Exchange]:
        """The first `count` connections (the client having hung up on each, with `closed`)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.exchanges if not closed or e.closed is not None]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"expected {count} connections, got {self.exchanges}"
            time.sleep(0.02)


def _read_request(conn: socket.socket) -> bytes:
    """A whole HTTP/1.1 request with a Content-Length body (what the dispatcher sends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body
