"""A loopback TCP proxy that can cut connections mid-response, and records what clients sent.

Used to interrupt real downloads for real: the client sees the connection drop in the middle of a
body, exactly as on a flaky network.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Proxy:
    def __init__(self, target_port: int, cut_after: int | None) -> None:
        self.target_port = target_port
        self.cut_after = cut_after  # response bytes per connection before it is cut; None: never
        self.sent = bytearray()  # everything clients sent, in order (request lines and headers)
        self.cuts = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closing = False

    @property
    def requests(self) -> str:
        with self._lock:
            return self.sent.decode("latin-1")

    def serve_forever(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=self._upload, args=(client, upstream), daemon=True).start()
        relayed = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if self.cut_after is not None and relayed + len(data) > self.cut_after:
                    client.sendall(data[: self.cut_after - relayed])
                    with self._lock:
                        self.cuts += 1
                    break
                client.sendall(data)
                relayed += len(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _upload(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    self.sent += data
                upstream.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        self._server.close()


@contextmanager
def proxy(target_url: str, cut_after: int | None = None) -> Iterator[Proxy]:
    port = int(target_url.rsplit(":", 1)[1])
    running = Proxy(port, cut_after)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.close()
        thread.join(5)
