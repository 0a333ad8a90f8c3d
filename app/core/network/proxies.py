"""Upstream calls through the operator's HTTP proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY).

httpx reads those variables only when a client has no custom transport; ours has one (pool limits,
the metrics wrapper), so this transport does the routing instead: per request, the proxy for the
URL's scheme unless NO_PROXY names the host, else a direct connection. The variables are read
with the standard library's own rules (`urllib.request`), so they mean what they mean to curl and
pip. Only http:// proxy URLs are supported (what corporate proxies use); others are ignored with a
warning rather than failing every call.
"""

from __future__ import annotations

import logging
import urllib.request

import httpx

from app.core.network.tls import client_context

log = logging.getLogger("app.proxies")


def env_proxies() -> dict[str, str]:
    """The usable proxy URL per scheme ("http", "https", "all") from the environment, read now."""
    found: dict[str, str] = {}
    proxies = urllib.request.getproxies_environment()
    for scheme in ("http", "https", "all"):
        url = proxies.get(scheme)
        if not url:
            continue
        if not url.startswith("http://"):
            log.warning("%s_PROXY ignored: only http:// proxies are supported", scheme.upper())
            continue
        found[scheme] = url
    return found


def proxy_for(proxies: dict[str, str], scheme: str, host: str) -> str | None:
    """The proxy for a URL: its scheme's (else ALL_PROXY) unless NO_PROXY covers the host."""
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass(host):
        return None
    return proxy


class EnvProxyTransport(httpx.AsyncBaseTransport):
    """A direct pool plus one pool per configured proxy; each request goes where the environment says."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.proxies = env_proxies()  # read once, at start-up
        tls = client_context()
        self.direct = httpx.AsyncHTTPTransport(limits=limits, verify=tls)
        self.proxied = {
            url: httpx.AsyncHTTPTransport(limits=limits, proxy=url, verify=tls) for url in set(self.proxies.values())
        }

    def route(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        proxy = proxy_for(self.proxies, url.scheme, url.host)
        return self.direct if proxy is None else self.proxied[proxy]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.route(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self.direct, *self.proxied.values()):
            await transport.aclose()
