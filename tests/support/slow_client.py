"""A client that asks for a download and then reads it slowly, or not at all: what a slow link or an
attacker does to a streamed archive.

It is a raw socket with a tiny receive buffer, so the server's sends back up after a few KiB
instead of filling megabytes of kernel buffers first. It may come from any loopback address
(127.0.0.2, ...): Linux routes the whole 127/8 block to the loopback interface, so each address is
another caller to the service's per-caller limits.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

RECEIVE_BUFFER = 4096


@dataclass
class Ending:
    """How a slow download ended once the client read what was left."""

    data: bytes
    how: str  # "complete" (the chunked body's last chunk came), "eof" (closed without it), "reset", "timeout"


class SlowClient:
    """One GET whose body is read `rate` bytes a second (0: never), from `source` (a loopback address)."""

    def __init__(self, url: str, path: str, *, source: str = "127.0.0.2", rate: int = 0, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.bind((source, 0))
        self.sock.settimeout(60)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n"
        self.sock.sendall(head.encode("latin-1"))
        self.rate = rate
        self.received = bytearray()
        self._stop = threading.Event()
        self._trickle: threading.Thread | None = None

    def head(self, timeout: float = 60.0) -> tuple[int, dict[str, str]]:
        """Read the status line and headers (and whatever little came with them); start trickling."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.received:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1024)
            if not chunk:
                raise ConnectionError(f"closed before the response head: {bytes(self.received)!r}")
            self.received += chunk
        head, _, _ = bytes(self.received).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if self.rate > 0:
            self._trickle = threading.Thread(target=self._read_slowly, daemon=True)
            self._trickle.start()
        return status, headers

    def _read_slowly(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.settimeout(1.0)
                chunk = self.sock.recv(self.rate)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.received += chunk
            self._stop.wait(1.0)

    def finish(self, timeout: float = 30.0) -> Ending:
        """Stop trickling and read everything left, fast, until the server ends the connection."""
        self._stop.set()
        if self._trickle is not None:
            self._trickle.join(5)
        deadline = time.monotonic() + timeout
        how = "timeout"
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            except ConnectionResetError:
                how = "reset"
                break
            if not chunk:
                how = "eof"
                break
            self.received += chunk
            if self.received.endswith(b"\r\n0\r\n\r\n"):
                how = "complete"
                break
        return Ending(bytes(self.received), how)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        if self._trickle is not None:
            self._trickle.join(5)
