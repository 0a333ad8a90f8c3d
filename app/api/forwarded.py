"""Who the caller is behind a known number of proxies: the address the outermost trusted proxy saw.

Each proxy appends the address it was reached from to X-Forwarded-For, so the list reads
"what the client claimed, ..., what proxy 1 saw, ..., what the last proxy saw". Only the last
TRUSTED_PROXY_HOPS entries were written by proxies we trust; everything left of them is the
client's own text. The caller is therefore the entry TRUSTED_PROXY_HOPS from the right (uvicorn's
FORWARDED_ALLOW_IPS="*" takes the leftmost, which the client chooses, and so lets a client be
anyone it likes to the rate limit). X-Forwarded-Proto is read from its last value, likewise.

With TRUSTED_PROXY_HOPS=0 (the default) this does nothing: the socket peer (or what uvicorn made
of it with FORWARDED_ALLOW_IPS listing the proxy's addresses) stays the caller. Pure ASGI, and it
rewrites the scope in place, so the access log, the rate limit and every later reader agree.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send


def forwarded_client(entries: list[str], hops: int) -> str | None:
    """The address `hops` proxies from the right of X-Forwarded-For (the leftmost when the list is
    shorter: every entry was then written by a trusted proxy); None for an empty list."""
    if not entries:
        return None
    return _host(entries[max(0, len(entries) - hops)])


def _host(entry: str) -> str:
    """The address of one X-Forwarded-For entry, without a port (`[v6]:port`, `v4:port`)."""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return entry  # an obfuscated or odd value (RFC 7239 allows some): still a distinct caller name


class ForwardedClientMiddleware:
    """Sets `scope["client"]` (and `scheme`) from the trusted end of the forwarding headers."""

    def __init__(self, app: ASGIApp, *, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.hops > 0:
            forwarded: list[str] = []
            proto: str | None = None
            for name, value in scope.get("headers", []):
                if name == b"x-forwarded-for":
                    forwarded += [e.strip() for e in value.decode("latin-1").split(",") if e.strip()]
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            client = forwarded_client(forwarded, self.hops)
            if client is not None:
                scope["client"] = (client, 0)
            if proto in ("http", "https") and scope["type"] == "http":
                scope["scheme"] = proto
        await self.app(scope, receive, send)
