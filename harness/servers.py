"""Run an ASGI app on a real loopback port for the duration of a test.

Tests talk to the service and the simulator over real HTTP, so both run under uvicorn, each in its
own thread with its own event loop, on an ephemeral port of 127.0.0.1. The socket is bound here and
handed to uvicorn, so no other test (the suite runs in parallel workers) can take the port between
choosing it and listening on it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from harness.processes import free_port as free_port  # per test worker, safe from each other (re-exported)


@contextmanager
def serve(app: Any, *, port: int | None = None, startup_timeout: float = 15.0, **config_options: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a background thread; yield its base URL; stop it on exit.

    `config_options` go to uvicorn.Config (e.g. root_path, as behind a path-prefixing proxy).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError:
        sock.close()
        raise
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
        **config_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"server on port {port} died during startup")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"server on port {port} did not start in {startup_timeout}s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
