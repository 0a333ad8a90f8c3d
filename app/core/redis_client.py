"""Every Redis client of the service, built one way: retried with backoff on connection errors.

redis-py's `from_url` gives a pool whose connections retry nothing: after Redis restarts (or a
proxy or `CLIENT KILL` closes idle connections), the next command on each pooled connection fails
at once. Jobs then lost their claim or their re-queue. Here every command that meets a closed or
refused connection reconnects and tries again, with jittered exponential backoff, for a few seconds
(RETRY_WINDOW_SECONDS): a restart or failover within that window costs latency, not an error.
Beyond it the error surfaces as before (routes answer 503, background loops try again later).

Connections idle longer than HEALTH_CHECK_SECONDS are PINGed before use, and TCP keepalive finds
peers that vanished without closing.
"""

from __future__ import annotations

from typing import Any

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


def connection_options(retries: int = RETRIES) -> dict[str, Any]:
    """Keyword arguments for a redis-py client or connection pool (taskiq-redis takes them too)."""
    return {
        "retry": Retry(EqualJitterBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS), retries),
        "retry_on_error": list(RETRIED_ERRORS),
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "socket_keepalive": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }


def connect(url: str, *, retries: int = RETRIES) -> aioredis.Redis:
    """A lazily connecting client with text replies; `retries=1` for callers that fail open fast."""
    client: aioredis.Redis = aioredis.from_url(url, decode_responses=True, **connection_options(retries))
    return client
