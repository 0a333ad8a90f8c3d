"""Which callback URLs we accept, and a transport that will only connect to public addresses.

Why both: a callback URL is a caller-chosen request from inside our network (SSRF). It is checked
when the job is created (a clear 422) and again at every delivery, at connect time, on the
addresses actually dialled: DNS can change between the two (rebinding), so the creation check
alone proves nothing. Redirects are never followed (httpx's default, kept explicit).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from app.core.network.addresses import first_refusal, resolve
from app.core.network.tls import client_context
from app.errors import Unprocessable

MAX_URL_LENGTH = 2048


class InvalidCallbackUrl(Unprocessable):
    pass


class UnsafeAddress(Exception):
    """A callback host resolved to an address we refuse to connect to."""


def check_syntax(url: str) -> tuple[str, int]:
    """The host and port of an acceptable callback URL; InvalidCallbackUrl (422) saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackUrl(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidCallbackUrl("callback_url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidCallbackUrl(f"callback_url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidCallbackUrl("callback_url must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise InvalidCallbackUrl("callback_url has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidCallbackUrl("callback_url must not carry credentials (user:password@); use the signature")
    if parts.fragment:
        raise InvalidCallbackUrl("callback_url must not have a #fragment")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def validate_callback_url(url: str, *, allow_private: bool) -> str:
    """Check a caller's callback URL at job creation: syntax, and (unless allowed) where it resolves."""
    url = url.strip()
    host, port = check_syntax(url)
    if allow_private:
        return url
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError):
        raise InvalidCallbackUrl(f"callback_url host '{host}' does not resolve") from None
    reason = first_refusal(addresses)
    if reason is not None:
        raise InvalidCallbackUrl(
            f"callback_url host '{host}' is not allowed: {reason} (callbacks go to public addresses only)"
        )
    return url


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses non-public addresses (unless allowed), then dials a checked address.

    TLS still verifies the certificate against the URL's host name (httpcore passes it to
    start_tls), so pinning the address costs nothing in correctness. Used even when private
    targets are allowed, so the tests' deliveries take the production path.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self._inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        reason = None if self._allow_private else first_refusal(addresses)
        if reason is not None:
            raise UnsafeAddress(f"{host} resolves to {reason}")
        failure: Exception | None = None
        for address in addresses:  # in resolver order, like a browser without happy eyeballs
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeAddress("unix sockets are not callback targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def callback_client(
    *,
    allow_private: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int = 64,
) -> httpx.AsyncClient:
    """The HTTP client deliveries go through: no redirects, no proxies from the environment, and
    the connect-time address check above. `ssl_context` defaults to the certifi CA bundle.

    `max_connections` matches the dispatcher's attempts in flight (httpcore's own default is 10:
    the eleventh attempt would queue for a connection behind slow receivers)."""
    tls = ssl_context or client_context(trust_env=False)
    transport = httpx.AsyncHTTPTransport(retries=0, trust_env=False, verify=tls)
    # httpx has no public hook for the network backend; the pool is the documented httpcore API.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        network_backend=_GuardedBackend(allow_private=allow_private),
        max_connections=max_connections,
        max_keepalive_connections=min(max_connections, 20),
        keepalive_expiry=5.0,
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": "autoenhance-batch-webhooks/1"},
    )
