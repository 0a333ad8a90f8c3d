"""Reading an upstream answer with a cap on its decoded size, enforced while decompressing.

httpx inflates a gzip body whole before anyone can look at its size: 1.5 MB of gzip that inflates to
1.5 GB took the process to 4.7 GB. Here the raw bytes are inflated by zlib with `max_length`, so at
most `limit` (+ one network chunk) is ever held, compressed or not, and the read stops at the cap.
Only the encodings we ask for (gzip, deflate) are accepted; any other is refused unread.
"""

from __future__ import annotations

import zlib

import httpx

ACCEPT_ENCODING = "gzip, deflate"
"""What JSON calls announce; an answer in another encoding is refused."""


class BodyTooLarge(Exception):
    """The decoded body went over the limit (or came in an encoding we did not ask for)."""


class _Inflater:
    def __init__(self, encoding: str) -> None:
        # 47 = 32 + 15: zlib or gzip header, detected; raw deflate (some servers) falls back below
        self._zlib = zlib.decompressobj(47)
        self._raw = encoding == "deflate"
        self._tried_raw = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate `data`, producing at most `room` + 1 bytes (one more than fits says 'too large')."""
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error:
            if not self._raw or self._tried_raw:
                raise
            self._tried_raw = True
            self._zlib = zlib.decompressobj(-15)
            out = self._zlib.decompress(data, room + 1)
        return out

    @property
    def pending(self) -> bytes:
        return self._zlib.unconsumed_tail


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed `response`, or BodyTooLarge past `limit` decoded bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip", "x-gzip", "deflate"):
        raise BodyTooLarge("an answer in a content encoding that was not asked for")
    inflater = None if encoding in ("identity", "") else _Inflater(encoding)
    body = bytearray()
    try:
        async for raw in response.aiter_raw():
            piece = raw
            while piece:
                out = piece if inflater is None else inflater.feed(piece, limit - len(body))
                body += out
                if len(body) > limit:
                    raise BodyTooLarge(f"an answer over {limit} bytes decoded (MAX_UPSTREAM_JSON_BYTES)")
                piece = b"" if inflater is None else inflater.pending
    except zlib.error as exc:
        raise httpx.DecodingError(f"corrupt {encoding} body: {exc}") from exc
    return bytes(body)


async def bounded_response(response: httpx.Response, limit: int) -> httpx.Response:
    """A copy of a streamed `response` holding its decoded body (read with the cap); the stream is closed.

    The copy drops Content-Encoding and Content-Length, which described the raw bytes.
    """
    try:
        content = await read_bounded(response, limit)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(response.status_code, headers=headers, content=content, request=response.request)
