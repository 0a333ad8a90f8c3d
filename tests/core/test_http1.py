"""The image byte path's HTTP/1.1 client against scripted servers on loopback: bodies arrive whole and
in blocks, connections are kept only when clean, and every way a server can misbehave ends in the
httpx error the retry policy expects. The service's own tests (faults, redirects, proxies) run it too."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.network.trusted_hosts import TrustedHosts
from app.core.upstream.http1 import BLOCK, Http1Fetcher
from app.core.upstream.transport import TargetRefused
from harness.servers import serve
from tests.webhooks.test_webhooks import self_signed_localhost

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw TCP server on loopback running `handler` per connection; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()
        self.ended = asyncio.Event()  # a connection's handler returned (it closed, or the client went)
        self.url = ""

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
            return None
        self.requests.append(head)
        return head

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):  # the client went; the test ended
            pass
        finally:
            writer.close()
            self.ended.set()


@asynccontextmanager
async def running(make: Callable[[Server], Handler]) -> AsyncIterator[Server]:
    server = Server(lambda r, w: make(server)(r, w))
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    async with listener:
        yield server


def fetcher(**overrides: Any) -> Http1Fetcher:
    options: dict[str, Any] = {"connect_timeout": 2.0, "read_timeout": 2.0, "trusted": TrustedHosts(), "proxies": {}}
    return Http1Fetcher(**(options | overrides))


def response(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def serving(bodies: dict[bytes, bytes]) -> Callable[[Server], Handler]:
    """Answer each request on a kept-alive connection with the body for its path."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (head := await server.read_request(reader)) is not None:
                path = head.split(b" ", 2)[1]
                writer.write(response(bodies[path]))
                await writer.drain()

        return handle

    return make


async def read_all(
    client: Http1Fetcher, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, list[int]]:
    async with client.get(url, headers or {}) as reply:
        pieces = [piece async for piece in reply.chunks()]
        assert reply.received == sum(map(len, pieces))
        return reply.status, b"".join(pieces), [len(p) for p in pieces]


async def test_bodies_arrive_whole_in_blocks_on_one_kept_connection() -> None:
    big, small = os.urandom(3 * BLOCK + 12345), b"tiny"
    async with running(serving({b"/big": big, b"/small": small})) as server:
        client = fetcher()
        try:
            status, body, sizes = await read_all(client, server.url + "/big")
            assert status == 200 and body == big
            assert sizes == [BLOCK, BLOCK, BLOCK, 12345]  # the body's own blocks, handed on as filled
            for _ in range(3):
                assert (await read_all(client, server.url + "/small"))[1] == small
        finally:
            await client.aclose()
    assert server.connections == 1


async def test_pieces_are_read_only_views_that_keep_their_bytes() -> None:
    body = os.urandom(BLOCK + 10)
    async with running(serving({b"/a": body, b"/b": os.urandom(BLOCK + 10)})) as server:
        client = fetcher()
        try:
            async with client.get(server.url + "/a", {}) as reply:
                kept = [piece async for piece in reply.chunks()]
            await read_all(client, server.url + "/b")  # the next body on the same connection
        finally:
            await client.aclose()
    assert b"".join(kept) == body  # not overwritten by what came after
    for piece in kept:
        assert isinstance(piece, memoryview) and piece.readonly


async def test_the_request_carries_host_headers_and_asks_for_no_content_coding() -> None:
    async with running(serving({b"/caf%C3%A9%20au%20lait?size=2": b"ok"})) as server:
        client = fetcher()
        try:
            status, body, _ = await read_all(client, server.url + "/café au lait?size=2", {"x-api-key": "k1"})
        finally:
            await client.aclose()
    assert (status, body) == (200, b"ok")
    request = server.requests[0].decode()
    port = server.url.rsplit(":", 1)[1]
    assert request.startswith("GET /caf%C3%A9%20au%20lait?size=2 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{port}\r\n" in request
    assert "x-api-key: k1\r\n" in request and "accept-encoding: identity\r\n" in request


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    async with running(serving({b"/": b"x"})) as server:
        client = fetcher()
        try:
            with pytest.raises(ValueError, match="line break"):
                await read_all(client, server.url + "/", {"x-api-key": "k\r\nx-evil: 1"})
        finally:
            await client.aclose()
    assert server.requests == []


def scripted(*answers: bytes, close: bool = True) -> Callable[[Server], Handler]:
    """Answer the first request with these bytes, written one after another, then close (or hang)."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if await server.read_request(reader) is None:
                return
            for part in answers:
                writer.write(part)
                await writer.drain()
            if not close:
                await reader.read()  # until the client goes
                server.closed_by_client.set()

        return handle

    return make


async def test_a_chunked_body_and_an_interim_answer_are_read() -> None:
    head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nX-Thing: Yes\r\n\r\n"
    async with running(scripted(head, b"5\r\nhello\r\n", b"7\r\n, world\r\n0\r\n\r\n")) as server:
        client = fetcher()
        try:
            async with client.get(server.url + "/", {}) as reply:
                assert reply.header("x-thing") == "Yes" and reply.header("X-THING") == "Yes"
                body = b"".join([piece async for piece in reply.chunks()])
        finally:
            await client.aclose()
    assert body == b"hello, world"


async def test_a_body_without_a_length_ends_with_its_connection() -> None:
    async with running(scripted(b"HTTP/1.1 200 OK\r\n\r\nfirst ", b"second")) as server:
        client = fetcher()
        try:
            assert (await read_all(client, server.url + "/"))[1] == b"first second"
        finally:
            await client.aclose()


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async with running(scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n", b"x" * 1000)) as server:
        client = fetcher()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="before the body's end"):
                await read_all(client, server.url + "/")
        finally:
            await client.aclose()


async def test_a_stalled_body_is_a_read_timeout() -> None:
    async with running(
        scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n", b"x" * 1000, close=False)
    ) as server:
        client = fetcher(read_timeout=0.5)
        started = time.monotonic()
        try:
            with pytest.raises(httpx.ReadTimeout):
                await read_all(client, server.url + "/")
        finally:
            await client.aclose()
        assert 0.4 < time.monotonic() - started < 5
        await asyncio.wait_for(server.closed_by_client.wait(), 5)  # and its connection was closed


async def test_no_answer_at_all_is_a_read_timeout() -> None:
    async with running(scripted(close=False)) as server:
        client = fetcher(read_timeout=0.5)
        try:
            with pytest.raises(httpx.ReadTimeout):
                await read_all(client, server.url + "/")
        finally:
            await client.aclose()


async def test_a_head_over_the_limit_is_refused() -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * 70_000 + b"\r\n\r\n"
    async with running(scripted(huge, close=False)) as server:
        client = fetcher()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="head over"):
                await read_all(client, server.url + "/")
        finally:
            await client.aclose()


async def test_a_malformed_head_is_a_protocol_error() -> None:
    async with running(scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 12abc\r\n\r\n")) as server:
        client = fetcher()
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await read_all(client, server.url + "/")
        finally:
            await client.aclose()


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = fetcher()
    try:
        with pytest.raises(httpx.ConnectError):
            await read_all(client, f"http://127.0.0.1:{port}/")
    finally:
        await client.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced_once() -> None:
    """The server answers one request per connection, then closes without saying so (no Connection: close)."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if await server.read_request(reader) is not None:
                writer.write(response(b"answer"))
                await writer.drain()

        return handle

    async with running(make) as server:
        client = fetcher()
        try:
            assert (await read_all(client, server.url + "/"))[1] == b"answer"
            await asyncio.wait_for(server.ended.wait(), 5)  # the server has closed its side
            await asyncio.sleep(0.05)
            assert (await read_all(client, server.url + "/"))[1] == b"answer"
        finally:
            await client.aclose()
    assert server.connections == 2


async def test_an_unread_body_closes_its_connection_and_a_clean_one_is_kept() -> None:
    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (head := await server.read_request(reader)) is not None:
                writer.write(response(b"x" * (5 * BLOCK) if b"/big" in head else b"ok"))
                await writer.drain()

        return handle

    async with running(make) as server:
        client = fetcher()
        try:
            async with client.get(server.url + "/big", {}) as reply:
                assert reply.status == 200  # left without reading: an error page, a refused size
            await asyncio.wait_for(server.ended.wait(), 5)  # closed at once, not left half-read
            await read_all(client, server.url + "/small")
            await read_all(client, server.url + "/small")
        finally:
            await client.aclose()
    assert server.connections == 2


async def test_bytes_past_the_body_make_the_connection_unusable() -> None:
    async with running(scripted(response(b"body") + b"garbage", close=False)) as server:
        client = fetcher()
        try:
            assert (await read_all(client, server.url + "/"))[1] == b"body"
            await asyncio.wait_for(server.closed_by_client.wait(), 5)
        finally:
            await client.aclose()


async def test_redirects_are_answered_not_followed_and_drained_for_reuse() -> None:
    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (head := await server.read_request(reader)) is not None:
                if b"/old" in head:
                    writer.write(response(b"moved", "302 Found", "location: /new\r\n"))
                else:
                    writer.write(response(b"new"))
                await writer.drain()

        return handle

    async with running(make) as server:
        client = fetcher()
        try:
            async with client.get(server.url + "/old", {}) as reply:
                assert (reply.status, reply.header("location")) == (302, "/new")
                await reply.drain(64 * 1024)
            assert (await read_all(client, server.url + "/new"))[1] == b"new"
        finally:
            await client.aclose()
    assert server.connections == 1


async def test_names_resolving_to_private_addresses_are_refused_unless_trusted() -> None:
    async with running(serving({b"/": b"secret"})) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        client = fetcher()
        try:
            with pytest.raises(TargetRefused, match="loopback"):
                await read_all(client, url + "/")
        finally:
            await client.aclose()
        port = int(server.url.rsplit(":", 1)[1])
        trusting = fetcher(trusted=TrustedHosts.parse([f"localhost:{port}"]))
        try:
            assert (await read_all(trusting, url + "/"))[1] == b"secret"
        finally:
            await trusting.aclose()
    assert server.connections == 1


async def test_every_response_is_observed() -> None:
    seen: list[tuple[str, str, str]] = []
    async with running(serving({b"/": b"x"})) as server:
        client = fetcher(observe=lambda method, url, outcome, seconds: seen.append((method, url, outcome)))
        try:
            await read_all(client, server.url + "/")
        finally:
            await client.aclose()
    assert seen == [("GET", server.url + "/", "200")]


async def test_tls_bodies_arrive_whole_and_the_certificate_is_checked(tmp_path: Path) -> None:
    body = os.urandom(2 * BLOCK + 777)
    digest = hashlib.sha256(body).hexdigest()

    async def app(
        scope: dict[str, object], receive: object, send: Callable[[dict[str, object]], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})

    cert, key = self_signed_localhost(tmp_path)
    with serve(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as plain_url:
        port = int(plain_url.rsplit(":", 1)[1])
        url = f"https://localhost:{port}/image.jpg"
        trusted = TrustedHosts.parse([f"localhost:{port}"])
        client = fetcher(trusted=trusted, ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            status, received, _ = await read_all(client, url)
        finally:
            await client.aclose()
        assert status == 200 and hashlib.sha256(received).hexdigest() == digest
        untrusting = fetcher(trusted=trusted)  # the system's trust store does not know this certificate
        try:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await read_all(untrusting, url)
        finally:
            await untrusting.aclose()
