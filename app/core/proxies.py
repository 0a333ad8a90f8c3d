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

log = logging.getLogger("app.proxies")


class EnvProxyTransport(httpx.AsyncBaseTransport):
    """A direct pool plus one pool per configured proxy; each request goes where the environment says."""

    def __init__(self, limits: httpx.Limits) -> None:
        proxies = urllib.request.getproxies_environment()  # read once, at start-up
        self.direct = httpx.AsyncHTTPTransport(limits=limits)
        self.proxied: dict[str, httpx.AsyncHTTPTransport] = {}
        for scheme in ("http", "https", "all"):
            url = proxies.get(scheme)
            if not url:
                continue
            if not url.startswith("http://"):
                log.warning("%s_PROXY ignored: only http:// proxies are supported", scheme.upper())
                continue
            self.proxied[scheme] = httpx.AsyncHTTPTransport(limits=limits, proxy=url)

    def route(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        """The pool for `url`: its scheme's proxy (else ALL_PROXY) unless NO_PROXY covers the host."""
        proxied = self.proxied.get(url.scheme) or self.proxied.get("all")
        if proxied is None or urllib.request.proxy_bypass(url.host):
            return self.direct
        return proxied

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.route(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self.direct, *self.proxied.values()):
            await transport.aclose()
