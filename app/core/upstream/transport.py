"""The byte path for image downloads: one small interface, and the aiohttp implementation of it.

Direct downloads go through app/core/upstream/http1.py (bodies received into the blocks that are
kept); downloads through an operator's proxy go through aiohttp here (CONNECT tunnels, proxy
rules), as every download did before.

Why not httpx here: measured on this project's machine, fetching 100 x 2 MB from nginx with five in
flight, httpx 0.28 spent 4-6 CPU seconds per GB (h11 parses and copies every read in Python) and
aiohttp 3.14 about 1.3-1.8 (its parser is C). Image bytes are nearly all of what the service moves,
so only their path changes: `httpx.AsyncClient` stays the face for API calls, and the upstream
client (app/core/upstream/client.py) keeps every policy (the key only to the API's origin, redirects
followed by hand, retries, the breaker) on top of `Fetcher`, whichever implementation is below.

What the aiohttp implementation keeps from the httpx stack, so callers see no difference:
- errors: aiohttp's exceptions become httpx's (ConnectError, ReadTimeout, RemoteProtocolError...),
  the vocabulary the retry policy and the breaker already sort;
- timeouts: connect and per-read, as for httpx; proxies: HTTP(S)_PROXY / NO_PROXY per request;
- metrics: each response's latency and outcome is handed to `observe`;
- addresses: names are resolved by `GuardedResolver`, which refuses non-public addresses for any
  host the operator did not configure, on the very addresses then dialled;
- a cancelled or failed read closes its connection at once (no socket left in CLOSE-WAIT); only a
  body read to its end gives the connection back to the pool.
Bodies are asked for without content coding (`Accept-Encoding: identity`): images are compressed
already, and a decoded size could not be checked against Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from app.core.network.addresses import first_refusal
from app.core.network.proxies import proxy_for
from app.core.network.trusted_hosts import TrustedHosts
from app.core.zip.format import Piece

Observe = Callable[[str, str, str, float], None]
"""(method, url, outcome, seconds to response headers): outcome is the status or an error kind."""


class TargetRefused(Exception):
    """A download target this service will not connect to (a private address, say): the image's failure."""


class Reply(Protocol):
    """One upstream response, body not yet read."""

    status: int
    url: str

    def header(self, name: str) -> str | None: ...

    def chunks(self) -> AsyncIterator[Piece]: ...

    @property
    def received(self) -> int:
        """Body bytes read so far, as sent (before any content decoding)."""
        ...

    async def drain(self, limit: int) -> None:
        """Read a small body to its end so the connection can be reused."""
        ...


class Fetcher(Protocol):
    def get(self, url: str, headers: dict[str, str]) -> contextlib.AbstractAsyncContextManager[Reply]: ...

    async def aclose(self) -> None: ...


# -- httpx (demo mode: the embedded simulator is an ASGI app, no network) ----------------------------


class _HttpxReply:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.url = str(response.url)

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    def chunks(self) -> AsyncIterator[Piece]:
        return self._response.aiter_bytes()

    @property
    def received(self) -> int:
        return self._response.num_bytes_downloaded

    async def drain(self, limit: int) -> None:
        length = self.header("content-length") or ""
        if length.isdigit() and int(length) <= limit:
            with contextlib.suppress(httpx.HTTPError):
                await self._response.aread()


class HttpxFetcher:
    """Downloads through the shared httpx client (its transport: metrics, proxies, ASGI in demo mode)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @contextlib.asynccontextmanager
    async def get(self, url: str, headers: dict[str, str]) -> AsyncIterator[Reply]:
        response = await self._http.send(self._http.build_request("GET", url, headers=headers), stream=True)
        try:
            yield _HttpxReply(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """The httpx client belongs to the services; they close it."""


# -- aiohttp (every real upstream) -------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves like the system does, then refuses non-public addresses unless the host is trusted.

    Trusted: the API's own host and port, the configured proxies and ALLOWED_ASSET_HOSTS, one
    `TrustedHosts` (app/core/network/trusted_hosts.py). aiohttp dials exactly the addresses returned here, so
    the check holds against DNS changing between a check and a connect. (aiohttp skips resolving IP
    literals; the upstream client checks those itself, where the literal is the address dialled.)
    """

    def __init__(self, trusted: TrustedHosts) -> None:
        self.trusted = trusted
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self.trusted.trusts(host, port):
            reason = first_refusal(ipaddress.ip_address(result["host"].split("%")[0]) for result in results)
            if reason is not None:
                raise TargetRefused(f"{host} resolves to {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class _AiohttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.url = str(response.url)
        self._received = 0

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def chunks(self) -> AsyncIterator[Piece]:
        # One buffered piece at a time, as the parser produced it: `readany` would join what is
        # buffered into a new bytes object (a copy of most of the body at full speed).
        read = self._response.content.readchunk
        try:
            while True:
                chunk, _ = await read()
                if not chunk:
                    return
                self._received += len(chunk)
                yield chunk
        except Exception as exc:
            raise _translated(exc) from exc

    @property
    def received(self) -> int:
        return self._received

    async def drain(self, limit: int) -> None:
        length = self.header("content-length") or ""
        if length.isdigit() and int(length) <= limit:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self._response.read()


def _translated(exc: BaseException) -> BaseException:
    """aiohttp's exception as the httpx one the retry policy and the breaker already understand."""
    if isinstance(exc, httpx.HTTPError | TargetRefused):
        return exc
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):  # SocketTimeoutError and its kin: no byte within the read timeout
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.ReadError(message)
    return exc


class Observed:
    """One GET timed to its response head, its outcome reported to `observe` as the block ends: the
    status, "refused", "timeout" or "connection_error" for an error already in httpx's vocabulary,
    or "cancelled". Both fetchers report through it, so their labels cannot drift apart."""

    def __init__(self, observe: Observe | None, url: str) -> None:
        self.outcome = "cancelled"
        self._observe = observe
        self._url = url
        self._started = time.perf_counter()

    def __enter__(self) -> Observed:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, TargetRefused):
            self.outcome = "refused"
        elif isinstance(exc, Exception):
            self.outcome = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        if self._observe is not None:
            self._observe("GET", self._url, self.outcome, time.perf_counter() - self._started)


class AiohttpFetcher:
    """One aiohttp session for every image download of the process."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        trusted: TrustedHosts,
        proxies: dict[str, str],
        observe: Observe | None = None,
    ) -> None:
        """`trusted`: the API's origin and ALLOWED_ASSET_HOSTS; the proxies' hosts are added here, since
        every proxied request dials them."""
        self.resolver = GuardedResolver(trusted | TrustedHosts.parse(urlsplit(url).netloc for url in proxies.values()))
        self._proxies = proxies
        self._observe = observe
        connector = aiohttp.TCPConnector(
            limit=0,  # the download budget is the limit, not the pool
            limit_per_host=0,
            resolver=self.resolver,
            keepalive_timeout=15,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout),
            auto_decompress=False,
            trust_env=False,  # proxies are routed here, from the environment read once (app/core/network/proxies.py)
            skip_auto_headers=("User-Agent",),
            read_bufsize=256 * 1024,
        )

    @contextlib.asynccontextmanager
    async def get(self, url: str, headers: dict[str, str]) -> AsyncIterator[Reply]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        proxy = proxy_for(self._proxies, parts.scheme, host)
        with Observed(self._observe, url) as observed:
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                if proxy is not None and not self.resolver.trusted.trusts(host, port):
                    # the proxy dials this host, so the rule can only look at what the name resolves to here
                    await self.resolver.resolve(host, port)
                response = await self._session.get(
                    url, headers=headers | {"accept-encoding": "identity"}, allow_redirects=False, proxy=proxy
                )
            except Exception as exc:
                translated = _translated(exc)
                if translated is exc:  # already httpx's, or a refusal
                    raise
                raise translated from exc
            observed.outcome = str(response.status)
        try:
            yield _AiohttpReply(response)
        finally:
            if response.content.at_eof():
                response.release()  # read to the end: the connection goes back to the pool
            else:
                response.close()  # cancelled or abandoned mid-body: close the socket now

    async def aclose(self) -> None:
        await self._session.close()
        await asyncio.sleep(0)  # let the transports see their close (aiohttp's documented shutdown)

