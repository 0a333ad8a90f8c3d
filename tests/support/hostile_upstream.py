"""An Autoenhance look-alike that redirects image downloads wherever a test tells it to.

The simulator only redirects to its own assets; an attacker who controls (or impersonates) the
upstream can answer `/enhanced` with a 302 to anything: the service's own routes, another service
on its loopback, a cloud metadata address. `redirects[image_id]` is the Location sent for an image;
`/asset/{image_id}` serves honest bytes on this same origin; `hits` counts what was asked.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

ORDER_ID = "6f1e2d3c-0000-4000-8000-00000000beef"


def image_bytes(image_id: str) -> bytes:
    return f"JPEG-ish bytes of {image_id}".encode() * 50


class HostileUpstream:
    def __init__(self, redirects: dict[str, str]) -> None:
        self.redirects = redirects
        self.hits: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route("/v3/orders/{order_id}", self.order),
                Route("/v3/images/{image_id}/enhanced", self.enhanced),
                Route("/asset/{image_id}", self.asset),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def order(self, request: Request) -> Response:
        images = [
            {"image_id": image_id, "image_name": f"{image_id}.jpg", "status": "processed", "enhanced": True}
            for image_id in self.redirects
        ]
        return JSONResponse({"order_id": request.path_params["order_id"], "name": "hostile", "images": images})

    async def enhanced(self, request: Request) -> Response:
        image_id = request.path_params["image_id"]
        self.hits["enhanced"] += 1
        return RedirectResponse(self.redirects[image_id], status_code=302)

    async def asset(self, request: Request) -> Response:
        self.hits["asset"] += 1
        return Response(image_bytes(request.path_params["image_id"]), media_type="image/jpeg")


class Bystander:
    """Another service on the loopback that must never be reached through a redirect."""

    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.hits += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"internal secret"})


class RawNamesUpstream(HostileUpstream):
    """Sends its order JSON with names encoded by `surrogatepass` (CESU-8): lone surrogates as raw
    bytes (ED A0 BD), not as `\\uXXXX` escapes. Python's json decodes such a body into the same
    unencodable text as the escapes; a real upstream built on another stack could send it."""

    def __init__(self, names: dict[str, str], order_name: str) -> None:
        super().__init__({image_id: f"/asset/{image_id}" for image_id in names})
        self.names = names
        self.order_name = order_name

    async def order(self, request: Request) -> Response:
        images = [
            {"image_id": image_id, "image_name": name, "status": "processed", "enhanced": True}
            for image_id, name in self.names.items()
        ]
        body = {"order_id": request.path_params["order_id"], "name": self.order_name, "images": images}
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return Response(raw, media_type="application/json")
