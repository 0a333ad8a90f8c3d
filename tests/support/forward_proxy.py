"""A real HTTP forward proxy on loopback, standing in for the operator's HTTP_PROXY: upstream calls that
should go through it can be seen, and calls that should not go through it can be shown not to."""

from __future__ import annotations

from typing import Any

import httpx


class ForwardProxy:
    """A minimal HTTP forward proxy (absolute-form requests, no CONNECT) that remembers what it forwarded."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []  # (url, carried x-api-key)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        target = scope["raw_path"].decode("latin-1")
        if not target.startswith("http"):  # the parser kept only the path: the Host header has the rest
            target = f"http://{headers['host']}{target}"
        if scope.get("query_string") and "?" not in target:
            target += "?" + scope["query_string"].decode("latin-1")
        self.seen.append((target, "x-api-key" in headers))
        forwarded = {k: v for k, v in headers.items() if k not in ("host", "proxy-connection", "connection")}
        async with httpx.AsyncClient(trust_env=False) as client:
            upstream = await client.request(scope["method"], target, headers=forwarded)
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        await send(
            {
                "type": "http.response.start",
                "status": upstream.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in upstream.headers.items() if k not in drop],
            }
        )
        await send({"type": "http.response.body", "body": upstream.content})
