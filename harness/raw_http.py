"""HTTP/1.1 by hand over a socket: what a hostile or slow client does that httpx will not.

Announce a body and never send it, send it one byte a second, send a header block of megabytes:
the tests need to see what the server answers *before* the client has finished.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int | None  # None: the server closed (or said nothing) without an answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0  # from the first byte sent to the answer (or to giving up)

    def detail(self) -> str:
        import json

        return str(json.loads(self.body)["detail"])


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)


def request(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Iterable[bytes] = (),
    *,
    pause: float = 0.0,
    timeout: float = 10.0,
) -> RawResponse:
    """Send the head, then each body piece (`pause` s apart, stopping if the server hangs up), then
    read the answer until the connection closes, its Content-Length is complete, or `timeout`."""
    host = urlsplit(url).netloc
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()
    with connect(url) as sock:
        sock.sendall(head.encode("latin-1"))
        sock.settimeout(0.05)
        data = b""
        for piece in body:
            if time.monotonic() > started + timeout:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server answered and closed: what we wanted to see
            with_answer = _read_some(sock)
            if with_answer is None:
                break
            data += with_answer
            if data:
                break
            if pause:
                time.sleep(pause)
        return _read_answer(sock, data, started, timeout)


def _read_some(sock: socket.socket) -> bytes | None:
    try:
        chunk = sock.recv(65536)
    except TimeoutError:
        return b""
    except OSError:
        return None
    return chunk if chunk else None


def _read_answer(sock: socket.socket, data: bytes, started: float, timeout: float) -> RawResponse:
    deadline = started + timeout
    while time.monotonic() < deadline:
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = _headers(head).get("content-length")
            if length is not None and len(rest) >= int(length):
                break
        sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    seconds = time.monotonic() - started
    if b"\r\n\r\n" not in data:
        return RawResponse(None, seconds=seconds)
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return RawResponse(status, _headers(head), rest, seconds)


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
