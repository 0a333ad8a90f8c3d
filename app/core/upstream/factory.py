"""The upstream client and its image byte path, assembled one way for the service and the command.

Both the service (app/wiring.py) and the command's direct mode (app/cli/direct.py) talk to
Autoenhance, and both must keep the same guarantees (ALLOWED_ASSET_HOSTS included), so the pieces
that carry them are put together here, once: the key only
to the API's origin and redirects checked by hand (AutoenhanceClient), names checked on the
addresses dialled, proxies and timeouts on the byte path (Http1Fetcher), both trusting one parsed
TrustedHosts. Callers pass plain values; what only the service has (metrics, tracing, the breaker)
comes in as optional arguments, so this module imports nothing above app/core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypedDict, Unpack

import httpx

from app.core.heap import keep_freed_buffers
from app.core.network.trusted_hosts import TrustedHosts
from app.core.upstream.breaker import UpstreamGuard
from app.core.upstream.client import AutoenhanceClient
from app.core.upstream.http1 import Http1Fetcher
from app.core.upstream.transport import Fetcher, Observe


class ClientOptions(TypedDict, total=False):
    """Handed to AutoenhanceClient as they are; its defaults hold for those left out."""

    attempts: int
    order_timeout: float
    image_timeout: float
    guard: UpstreamGuard
    max_json_bytes: int
    api_version: str | None


def build_client(
    *,
    base_url: str,
    api_key: str | None,
    http: httpx.AsyncClient,
    read_timeout: float,
    connect_timeout: float = 10.0,
    asset_hosts: Iterable[str] = (),
    proxies: dict[str, str] | None = None,
    observe: Observe | None = None,
    images_over_http: bool = False,
    make: Callable[..., AutoenhanceClient] = AutoenhanceClient,
    **options: Unpack[ClientOptions],
) -> AutoenhanceClient:
    """The client to Autoenhance at `base_url`; closing it closes the byte path it made.

    `http` carries the API calls and stays the caller's to close. `asset_hosts`: ALLOWED_ASSET_HOSTS
    entries, trusted by the redirect check and the resolver alike. `proxies`: per scheme, as
    `env_proxies()` reads them (None: none). `observe`: each image response's outcome and latency.
    `images_over_http`: image bytes through `http` as well (demo mode: the simulator is an ASGI app
    in this process, which only httpx reaches; `observe` and the timeouts here are then unused).
    `make`: the client class, or the service's traced one with its tracer bound.
    """
    keep_freed_buffers()  # the byte path's buffers, freed at full speed, are reused (app/core/heap.py)
    assets = TrustedHosts.parse(asset_hosts)
    fetcher: Fetcher | None = None
    if not images_over_http:
        fetcher = Http1Fetcher(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            trusted=assets | TrustedHosts.origin(base_url),
            proxies=proxies or {},
            observe=observe,
        )
    return make(base_url=base_url, api_key=api_key, http=http, fetcher=fetcher, asset_hosts=assets, **options)
