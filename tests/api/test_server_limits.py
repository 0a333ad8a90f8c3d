"""The server settings `python -m app serve` ships: huge and slow request heads are cut off.

Raw sockets against a real uvicorn: once with the options in-process (a short header deadline, so
the test is quick), once as the real `python -m app serve` process `make run` and render.yaml start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app import create_app
from app.server import MAX_HEADER_BYTES, GuardedHttpToolsProtocol, server_options
from harness import raw_http
from harness.servers import free_port, serve
from tests.conftest import Sim, service_settings

ROOT = Path(__file__).resolve().parents[2]


class QuickHeaders(GuardedHttpToolsProtocol):
    header_timeout = 1.0


@pytest.fixture
def guarded(simulator: Sim, tmp_path: Path) -> Iterator[str]:
    app = create_app(service_settings(simulator.url, tmp_path / "data"))
    with serve(app, **(server_options(limit_concurrency=50) | {"http": QuickHeaders})) as url:
        yield url


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes the connection within `seconds` (we send nothing meanwhile)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_a_huge_header_block_is_refused(guarded: str) -> None:
    answer = raw_http.request(guarded, "GET", "/health", {"X-Pad": "a" * (4 * MAX_HEADER_BYTES)}, timeout=5)
    assert answer.status == 431 and str(MAX_HEADER_BYTES) in answer.detail()
    many = {f"X-Many-{n}": "b" * 100 for n in range(1000)}  # 100 KB in many small headers
    assert raw_http.request(guarded, "GET", "/health", many, timeout=5).status == 431
    with httpx.Client(base_url=guarded) as client:  # an ordinary request is unaffected
        assert client.get("/health", headers={"X-Pad": "a" * 4000}).status_code == 200
        big_body = client.post("/health", content=b"x" * 200_000)  # a body is not a head: not a 431
        assert big_body.status_code in (405, 413), big_body.text


def test_unfinished_headers_are_cut_off(guarded: str) -> None:
    with raw_http.connect(guarded) as silent, raw_http.connect(guarded) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        cut = False
        for _ in range(20):  # a header line every 0.3 s, never the blank line that ends them
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                cut = True
                break
            time.sleep(0.3)
        assert cut or _closed_within(slow, 3.0)
        assert time.monotonic() - started < 5
        assert _closed_within(silent, 1.0)  # opened and never spoke: closed by the same deadline


def test_a_kept_alive_connection_gets_the_same_deadline(guarded: str) -> None:
    with raw_http.connect(guarded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in sock.recv(65536).split(b"\r\n", 1)[0]
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next request starts, and stalls
        assert _closed_within(sock, 3.0)


def test_the_shipped_commands_serve_with_these_limits(tmp_path: Path) -> None:
    assert "$(BIN)/python -m app serve " in (ROOT / "Makefile").read_text()
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    assert any(s.get("startCommand", "").startswith("python -m app serve ") for s in blueprint["services"])
    port = free_port()
    env = os.environ | {"DATA_DIR": str(tmp_path), "AUTOENHANCE_API_KEY": "", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"{url}/health", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        huge = raw_http.request(url, "GET", "/health", {"X-Pad": "a" * (1024 * 1024)}, timeout=10)
        assert huge.status == 431  # httptools alone would take the megabyte (and a gigabyte)
    finally:
        process.terminate()
        process.wait(15)


def test_a_streamed_zip_is_framed_correctly_without_the_copy(guarded: str, simulator: Sim) -> None:
    """Large pieces of a chunked response go out through writelines (app/server.py FramedCycle):
    the framing must be exact, or the kept-alive connection's next answer would be garbage."""
    from simulator import SeedImage
    from tests.support.jobs_helpers import seed
    from tests.support.zipcheck import check_zip

    sizes = {"tiny.jpg": 10, "small.jpg": 5_000, "edge.jpg": 16 * 1024, "large.jpg": 700_000, "big.jpg": 3_000_000}
    order_id = seed(simulator, *(SeedImage(name=name.removesuffix(".jpg"), size=size) for name, size in sizes.items()))
    with httpx.Client(base_url=guarded, timeout=30) as client:  # one connection for both requests
        response = client.get(f"/orders/{order_id}/images")
        assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
        files = check_zip(response.content)
        assert {name: len(data) for name, data in files.items() if name.endswith(".jpg")} == sizes
        assert client.get("/health").status_code == 200  # the same connection, still in step
