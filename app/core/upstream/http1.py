"""Image downloads over HTTP/1.1, each body received straight into the blocks the spool then keeps.

Why not aiohttp on this path (it stays for downloads through an operator's proxy): before the spool
saw a byte, every body byte was copied twice in this process (the event loop made a new bytes
object per socket read, aiohttp's parser another per body piece), and the reader woke for each
piece. Here an `asyncio.BufferedProtocol` hands the socket, or the TLS layer, a block of the body
to fill (up to BLOCK bytes): the kernel's copy is the only one, and the reader wakes once a block is
full. Receiving 100 x 2 MB from nginx five at a time (`python -m bench.receive`) took 0.41-0.47 CPU
s per GB through aiohttp and 0.24-0.25 here, at nearly twice the speed.

What it keeps from the aiohttp path, so callers see no difference:
- addresses: a name is resolved by `GuardedResolver` (app/core/upstream/transport.py), which refuses
  non-public addresses for a host the operator did not trust, and only what it returns is dialled
  (an address literal is dialled as it is: the upstream client checks those itself);
- errors: httpx's vocabulary (ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError,
  ReadError), which the retry policy and the breaker already sort;
- timeouts: connect (name resolution included), and read: no byte for `read_timeout` while a
  response is awaited;
- connections: kept alive per (scheme, host, port) for KEEPALIVE_SECONDS and reused; a response not
  read to its end closes its connection at once (no socket left in CLOSE-WAIT); a kept connection
  the server closed before answering is replaced once (the request is a GET);
- metrics: each response's latency to its head and its outcome go to `observe`.
Heads are parsed by httptools (llhttp, the parser of uvicorn's server side). A chunked body goes
through it too, with a copy (images come with a Content-Length); a body with neither ends with
its connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httptools
import httpx

from app.core.network.proxies import proxy_for
from app.core.network.trusted_hosts import TrustedHosts
from app.core.upstream.transport import AiohttpFetcher, GuardedResolver, Observe, Observed, Reply
from app.core.zip.format import Piece

BLOCK = 1024 * 1024
"""The most one body block holds: the reader wakes once per block (a body's last block is its rest)."""
SCRATCH = 64 * 1024
"""Where heads (and chunked bodies) are received, one buffer per connection."""
MAX_HEAD = 64 * 1024
READY_HIGH = 4
"""Blocks received and not yet taken: past this the socket is not read until the reader catches up."""
KEEPALIVE_SECONDS = 15.0
MAX_IDLE_PER_ORIGIN = 32

_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(6)
_RECEIVING = (_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE)
_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")
"""A character a request target may not carry as it is (RFC 3986): such targets are percent-encoded."""
_BREAK = re.compile(r"[\r\n\0]")


def _target(path: str, query: str) -> str:
    target = (path or "/") + (f"?{query}" if query else "")
    if _UNSAFE.search(target):  # a Location with spaces or non-ASCII: encoded as a browser would
        target = quote(target, safe="!$&'()*+,;=:@/?%~")
    return target


class _Connection(asyncio.BufferedProtocol):
    """One kept-alive connection, one response at a time: its head, then its body as blocks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], read_timeout: float) -> None:
        self.key = key
        self._loop = loop
        self._read_timeout = read_timeout
        self._transport: asyncio.Transport | None = None
        self._scratch = memoryview(bytearray(SCRATCH))
        self._state = _IDLE
        self._head = bytearray()
        self._parser: Any = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self._remaining = 0
        self._block: memoryview | None = None
        self._filled = 0
        self.pieces: collections.deque[Piece] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.closed = False
        self.got_bytes = False  # a byte of the current response arrived (a dead kept connection has none)
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self.idle_since = 0.0

    # -- the exchange, as the fetcher drives it ----------------------------------------------------

    def send(self, request: bytes) -> None:
        self._state = _HEAD
        self.status = 0
        self.headers = {}
        self.keep_alive = False
        self.got_bytes = False
        self._parser = None
        self._last = self._loop.time()
        self._arm()
        assert self._transport is not None
        self._transport.write(request)

    async def head(self) -> None:
        """Until the head has arrived (then `status` and `headers` hold it); the failure, else."""
        while self._state == _HEAD and self.error is None:
            await self.wait()
        if self.error is not None:
            raise self.error

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def reusable(self) -> bool:
        return self._state == _DONE and self.keep_alive and self.error is None and not self.closed

    def take(self) -> Piece:
        piece = self.pieces.popleft()
        if self._paused and len(self.pieces) <= 1 and self._transport is not None:
            self._paused = False
            self._last = self._loop.time()  # the wait was ours, not the server's
            self._transport.resume_reading()
        return piece

    async def wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def idle(self) -> None:
        """The response was read to its end: ready for the next request."""
        self._state = _IDLE
        self.pieces.clear()
        self.headers = {}
        self._parser = None
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.BufferedProtocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream: TCP, or TLS over it

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == _LENGTH:
            if self._block is None:
                self._block = memoryview(bytearray(min(self._remaining, BLOCK)))
                self._filled = 0
            return self._block[self._filled :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self._last = self._loop.time()
        self.got_bytes = True
        if self._state == _LENGTH:
            self._advance(nbytes)
            return
        try:
            self._received(self._scratch[:nbytes])
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response from the server: {exc}"))
        except httpx.HTTPError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says what that meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self._state == _UNTIL_CLOSE:
            self._finish()
        elif self._state in _RECEIVING:
            if exc is not None:
                self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
            elif self._state == _HEAD:
                self._fail(httpx.RemoteProtocolError("the server closed the connection without answering"))
            else:
                self._fail(httpx.RemoteProtocolError("the server closed the connection before the body's end"))
        self._wake()

    # -- parsing -------------------------------------------------------------------------------

    def _received(self, data: memoryview) -> None:
        if self._state == _HEAD:
            self._feed_head(data)
        elif self._state == _CHUNKED:
            self._parser.feed_data(data)
        elif self._state == _UNTIL_CLOSE:
            self._hand_over(bytes(data))
        else:
            raise httpx.RemoteProtocolError("the server sent bytes no request asked for")

    def _feed_head(self, data: memoryview) -> None:
        head = self._head
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(head) > MAX_HEAD:
                raise httpx.RemoteProtocolError(f"a response head over {MAX_HEAD} bytes")
            return
        end += 4
        if end > MAX_HEAD:
            raise httpx.RemoteProtocolError(f"a response head over {MAX_HEAD} bytes")
        self._head = bytearray()
        parser = httptools.HttpResponseParser(self)
        parser.feed_data(head[:end])
        rest = memoryview(head)[end:]
        status = parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols unasked")
            self.headers = {}
            if rest:
                self._feed_head(rest)  # an interim answer (100 Continue): the real one follows
            return
        self.status = status
        self.keep_alive = parser.should_keep_alive()
        coding = self.headers.get("transfer-encoding")
        length = self.headers.get("content-length")
        if status in (204, 304):
            self._finish()
        elif coding is not None:
            if coding.rpartition(",")[2].strip().lower() != "chunked":
                raise httpx.RemoteProtocolError(f"a transfer coding this client does not read ({coding})")
            self._state = _CHUNKED
            self._parser = parser
            if rest:
                parser.feed_data(rest)
        elif length is not None:
            self._remaining = int(length)  # digits: llhttp refuses anything else
            if self._remaining == 0:
                self._finish()
            else:
                self._state = _LENGTH
                if rest:
                    self._copy_body(rest)
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False
            if rest:
                self._hand_over(bytes(rest))
        self._wake()

    def _copy_body(self, data: memoryview) -> None:
        """Body bytes that came with the head: into blocks, as the socket would have put them."""
        if len(data) > self._remaining:
            self.keep_alive = False  # more than the body: whatever follows is not ours to read
            data = data[: self._remaining]
        while data:
            target = self.get_buffer(len(data))
            n = min(len(target), len(data))
            target[:n] = data[:n]
            data = data[n:]
            self._advance(n)

    def _advance(self, nbytes: int) -> None:
        assert self._block is not None
        self._filled += nbytes
        self._remaining -= nbytes
        if self._filled == len(self._block):
            block, self._block = self._block, None
            self._hand_over(block.toreadonly())
        if self._remaining == 0:
            self._finish()

    def _hand_over(self, piece: Piece) -> None:
        self.pieces.append(piece)
        if len(self.pieces) >= READY_HIGH and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    # httptools callbacks (the head; a chunked body)
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_body(self, body: bytes) -> None:
        if self._state == _CHUNKED:
            self._hand_over(body)

    def on_message_complete(self) -> None:
        if self._state == _CHUNKED:
            self._finish()

    # -- ends and timers -------------------------------------------------------------------------

    def _finish(self) -> None:
        self._state = _DONE
        self._disarm()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self) -> None:
        self._disarm()
        self._timer = self._loop.call_at(self._last + self._read_timeout, self._check_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        """Re-armed from the last byte's time: one timer per read timeout, not one per read."""
        self._timer = None
        if self._state not in _RECEIVING or self.closed:
            return
        now = self._loop.time()
        if self._paused:
            self._last = now
        if now - self._last >= self._read_timeout:
            self._fail(httpx.ReadTimeout(f"no data from the server for {self._read_timeout:g} s"))
        else:
            self._arm()


class _Reply:
    """One response of an `Http1Fetcher`, its body not yet read."""

    def __init__(self, connection: _Connection, url: str) -> None:
        self._connection = connection
        self.status = connection.status
        self.url = url
        self._received = 0

    def header(self, name: str) -> str | None:
        return self._connection.headers.get(name.lower())

    async def chunks(self) -> AsyncIterator[Piece]:
        connection = self._connection
        pieces = connection.pieces
        while True:
            while pieces:
                piece = connection.take()
                self._received += len(piece)
                yield piece
            if connection.error is not None:
                raise connection.error
            if connection.done:
                return
            await connection.wait()

    @property
    def received(self) -> int:
        return self._received

    async def drain(self, limit: int) -> None:
        length = self.header("content-length") or ""
        if length.isdigit() and int(length) <= limit:
            with contextlib.suppress(httpx.HTTPError):
                async for _ in self.chunks():
                    pass


class _Pool:
    """Idle kept-alive connections per (scheme, host, port), closed after KEEPALIVE_SECONDS."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._sweep: asyncio.TimerHandle | None = None

    def take(self, key: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > KEEPALIVE_SECONDS:
                connection.close()
                continue
            return connection
        return None

    def put(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        connection.idle()
        connection.idle_since = loop.time()
        idle = self._idle.setdefault(connection.key, [])
        idle.append(connection)
        if len(idle) > MAX_IDLE_PER_ORIGIN:
            idle.pop(0).close()
        if self._sweep is None:
            self._sweep = loop.call_later(KEEPALIVE_SECONDS, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = loop.time()
        for key, idle in list(self._idle.items()):
            kept = []
            for connection in idle:
                if connection.closed:
                    continue
                if now - connection.idle_since > KEEPALIVE_SECONDS:
                    connection.close()
                else:
                    kept.append(connection)
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]
        if self._idle:
            self._sweep = loop.call_later(KEEPALIVE_SECONDS, self._expire, loop)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class Http1Fetcher:
    """Every image download of the process; those through a proxy go to aiohttp (CONNECT, proxy rules)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        trusted: TrustedHosts,
        proxies: dict[str, str],
        observe: Observe | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`trusted`: the API's origin and ALLOWED_ASSET_HOSTS. `ssl_context`: the system's trust store
        when None (a test passes one trusting its own certificate)."""
        self.resolver = GuardedResolver(trusted)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._proxies = proxies
        self._observe = observe
        self._ssl = ssl_context
        self._pool = _Pool()
        self._proxied = (
            AiohttpFetcher(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                trusted=trusted,
                proxies=proxies,
                observe=observe,
            )
            if proxies
            else None
        )

    @contextlib.asynccontextmanager
    async def get(self, url: str, headers: dict[str, str]) -> AsyncIterator[Reply]:
        if self._proxied is not None:
            parts = urlsplit(url)
            if proxy_for(self._proxies, parts.scheme, parts.hostname or "") is not None:
                async with self._proxied.get(url, headers) as proxied:
                    yield proxied
                return
        with Observed(self._observe, url) as observed:
            connection = await self._exchange(url, headers)
            observed.outcome = str(connection.status)
        try:
            yield _Reply(connection, url)
        finally:
            if connection.reusable:
                self._pool.put(connection, asyncio.get_running_loop())
            else:
                connection.close()  # cancelled or abandoned mid-body: the socket goes now

    async def _exchange(self, url: str, headers: dict[str, str]) -> _Connection:
        """A connection whose response head has arrived for GET `url`."""
        try:
            parts = urlsplit(url)
            scheme, port = parts.scheme, parts.port
            host = parts.hostname or ""
            if not host.isascii():
                host = host.encode("idna").decode("ascii")
        except (ValueError, UnicodeError) as exc:
            raise httpx.UnsupportedProtocol(f"an address this client cannot use: {exc}") from exc
        if scheme not in ("http", "https") or not host:
            raise httpx.UnsupportedProtocol(f"an address this client cannot use ({scheme or 'no'} scheme)")
        default = 443 if scheme == "https" else 80
        port = port or default
        named = f"[{host}]" if ":" in host else host
        lines = [
            f"GET {_target(parts.path, parts.query)} HTTP/1.1",
            f"host: {named if port == default else f'{named}:{port}'}",
        ]
        for name, value in (headers | {"accept-encoding": "identity"}).items():
            if _BREAK.search(name) or _BREAK.search(value):
                raise ValueError(f"the request header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        key = (scheme, host, port)
        loop = asyncio.get_running_loop()
        fresh = False
        while True:
            connection = None if fresh else self._pool.take(key, loop.time())
            reused = connection is not None
            if connection is None:
                connection = await self._connect(loop, key)
            try:
                connection.send(request)
                await connection.head()
                return connection
            except (httpx.RemoteProtocolError, httpx.ReadError):
                connection.close()
                if reused and not connection.got_bytes:
                    fresh = True  # the server had closed the kept connection: once more, on a new one
                    continue
                raise
            except BaseException:
                connection.close()
                raise

    async def _connect(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        context = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                failure: OSError | None = None
                for family, address in await self._addresses(host, port):
                    connection = _Connection(loop, key, self._read_timeout)
                    try:
                        transport, _ = await loop.create_connection(
                            lambda connection=connection: connection,
                            address,
                            port,
                            family=family,
                            ssl=context,
                            server_hostname=host if context else None,
                        )
                    except OSError as exc:  # ssl.SSLError included: the next address, else the error
                        failure = exc
                        continue
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return connection
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} took over {self._connect_timeout:g} s") from exc
        except OSError as exc:  # the name did not resolve
            raise httpx.ConnectError(f"cannot reach {host}:{port}: {exc}") from exc
        raise httpx.ConnectError(f"cannot reach {host}:{port}: {failure}")

    async def _addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        """An address literal as it is (the client checked it); a name through the guarded resolver."""
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            return [(socket.AF_INET6 if address.version == 6 else socket.AF_INET, host)]
        results = await self.resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(int(result["family"]), str(result["host"])) for result in results]

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def aclose(self) -> None:
        self._pool.close()
        await self.resolver.close()
        if self._proxied is not None:
            await self._proxied.aclose()
