"""An Autoenhance stand-in that misbehaves in ways the simulator will not: compressed bombs.

It answers the order fetch with a valid order JSON padded by `pad` bytes of whitespace, sent in
the chosen Content-Encoding (gzip inflates ~1000:1, so 100 MB of order is ~100 KB on the wire),
and serves that order's one image, so a client that swallows the bomb goes on to build a ZIP.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

IMAGE_ID = "0b9f1a52-7d4e-4c61-9a7e-3c2f5d8e1a90"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"


def _compress(text_head: bytes, pad: int, tail: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = [packer.compress(text_head)]
    block = b" " * (1024 * 1024)
    for _ in range(pad // len(block)):
        out.append(packer.compress(block))
    out.append(packer.compress(b" " * (pad % len(block)) + tail))
    out.append(packer.flush())
    return b"".join(out)


@dataclass
class Bomb:
    pad: int
    encoding: str = "gzip"  # gzip, deflate (zlib-wrapped), raw-deflate (sent as "deflate"), identity, br
    order_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def body(self) -> tuple[bytes, str]:
        order = {"order_id": self.order_id, "name": "Bomb", "images": [
            {"image_id": IMAGE_ID, "image_name": "a.jpg", "status": "processed", "enhanced": True}
        ]}
        text = json.dumps(order).encode()
        head, tail = text[:-1], text[-1:]
        if self.encoding == "identity":
            return head + b" " * self.pad + tail, "identity"
        wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15, "br": 31}[self.encoding]
        encoded = _compress(head, self.pad, tail, wbits)
        return encoded, "deflate" if self.encoding == "raw-deflate" else self.encoding

    def app(self) -> Starlette:
        payload, encoding = self.body()

        async def order(request: Request) -> Response:
            headers = {"content-type": "application/json"}
            if encoding != "identity":
                headers["content-encoding"] = encoding
            return Response(payload, headers=headers)

        async def enhanced(request: Request) -> Response:
            return Response(JPEG, media_type="image/jpeg")

        return Starlette(routes=[
            Route("/v3/orders/{order_id}", order),
            Route("/v3/images/{image_id}/enhanced", enhanced),
        ])
