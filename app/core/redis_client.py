"""Every Redis client of the service, built one way: retried with backoff on connection errors.

redis-py's `from_url` gives a pool whose connections retry nothing: after Redis restarts (or a
proxy or `CLIENT KILL` closes idle connections), the next command on each pooled connection fails
at once. Jobs then lost their claim or their re-queue. Here every command that meets a closed or
refused connection reconnects and tries again, with jittered exponential backoff, for a few seconds
(RETRY_WINDOW_SECONDS): a restart or failover within that window costs latency, not an error.
Beyond it the error surfaces as before (routes answer 503, background loops try again later).

Connections idle longer than HEALTH_CHECK_SECONDS are PINGed before use, and TCP keepalive finds
peers that vanished without closing.

Every connection sends its commands under `asyncio.timeout` rather than redis-py's
`asyncio.wait_for`: on Python 3.11, wait_for drops a cancellation that arrives as the send
completes, so a task cancelled during a Redis command (a job's heartbeat, the webhook dispatcher,
the queue listener) ran on; a stopped worker hung and a handed-back job kept renewing its lease.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

RETRIES = 10
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
RETRY_WINDOW_SECONDS = 3.75
"""The least total backoff of RETRIES tries (EqualJitterBackoff waits between half and all of
min(cap, base * 2**n)): 0.1 + 0.2 + 0.4 + 0.8 + 6 x 1.0 = 7.5 s at most, 3.75 s at least."""
HEALTH_CHECK_SECONDS = 15
SOCKET_TIMEOUT_SECONDS = 15.0
"""No command of the service blocks in Redis longer than a few seconds (the job queue's XREADGROUP
blocks 2 s), so a reply slower than this means a dead peer: fail and reconnect."""
CONNECT_TIMEOUT_SECONDS = 5.0

RETRIED_ERRORS: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, BusyLoadingError, ConnectionResetError)
"""Errors of the connection, never of the command: the command may be sent again. (BusyLoadingError:
a restarted Redis that is still loading its data answers LOADING for a moment.)"""


class _CancelSafeSend:
    """redis-py's `send_packed_command` with the write timed by `asyncio.timeout`, which keeps a
    cancellation that meets the end of the write (wait_for on Python 3.11 loses it)."""

    if TYPE_CHECKING:  # provided by the redis-py connection class this is mixed into
        socket_timeout: float | None
        is_connected: bool
        _writer: asyncio.StreamWriter

        async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None: ...
        async def check_health(self) -> None: ...
        async def disconnect(self, nowait: bool = False, **kwargs: Any) -> None: ...

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        parts = [command] if isinstance(command, bytes) else command
        try:
            async with asyncio.timeout(self.socket_timeout or None):
                self._writer.writelines(parts)
                await self._writer.drain()
        except builtins.TimeoutError as exc:  # the builtin one (not redis-py's): the write outlasted socket_timeout
            await self.disconnect(nowait=True)
            raise TimeoutError("Timeout writing to socket") from exc
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:  # a cancelled write leaves the connection mid-command: never reuse it
            await self.disconnect(nowait=True)
            raise


class CancelSafeConnection(_CancelSafeSend, aioredis.Connection):  # type: ignore[misc]
    """A TCP connection (redis://)."""


class CancelSafeSSLConnection(_CancelSafeSend, aioredis.SSLConnection):  # type: ignore[misc]
    """A TLS connection (rediss://)."""


class CancelSafeUnixConnection(_CancelSafeSend, aioredis.UnixDomainSocketConnection):  # type: ignore[misc]
    """A Unix socket connection (unix://)."""


def connection_class(url: str) -> type[aioredis.connection.AbstractConnection]:
    """The cancel-safe connection class for the URL's scheme (from_url would pick redis-py's own)."""
    scheme = urlsplit(url).scheme
    if scheme == "rediss":
        return CancelSafeSSLConnection
    if scheme == "unix":
        return CancelSafeUnixConnection
    return CancelSafeConnection


def connection_options(url: str, retries: int = RETRIES) -> dict[str, Any]:
    """Keyword arguments for a redis-py client or connection pool of `url` (taskiq-redis takes them too)."""
    return {
        "connection_class": connection_class(url),
        "retry": Retry(EqualJitterBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), retries),
        "retry_on_error": list(RETRIED_ERRORS),
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "socket_keepalive": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }


def cancel_safe(pool: aioredis.ConnectionPool, url: str) -> None:
    """Make `pool` open the cancel-safe connections. Needed after every `from_url`: for rediss:// and
    unix:// URLs it names redis-py's own class over the one passed in, so TLS and socket clients
    would otherwise keep wait_for's lost cancellations."""
    pool.connection_class = connection_class(url)


def client(url: str, **options: Any) -> aioredis.Redis:
    """A lazily connecting client of `url` with redis-py's `options`, on the cancel-safe connections."""
    pool = aioredis.ConnectionPool.from_url(url, **options)
    cancel_safe(pool, url)
    return aioredis.Redis.from_pool(pool)


def connect(url: str, *, retries: int = RETRIES) -> aioredis.Redis:
    """A lazily connecting client with text replies; `retries=1` for callers that fail open fast."""
    return client(url, decode_responses=True, **connection_options(url, retries))
