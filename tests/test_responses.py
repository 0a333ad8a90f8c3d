"""ArchiveResponse cleans up on every path, including ones real HTTP cannot produce on demand.

A client that is gone before the response starts makes the very first `send` fail, so the body
generator never starts, and closing an unstarted generator runs none of its `finally` blocks. That
window (between the first image succeeding and the headers going out) is a race on a real socket,
so this test drives the ASGI callable directly with a `send` that fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.types import Message, Receive

from app.api.responses import ArchiveResponse


def server_receive() -> Receive:
    """Like a server's: the (empty) request body once, then nothing until the client leaves."""
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def test_on_close_runs_even_when_the_body_never_started() -> None:
    started = False
    closed = []

    async def body() -> AsyncIterator[bytes]:
        nonlocal started
        started = True
        yield b"never sent"

    async def on_close() -> None:
        closed.append(True)

    receive = server_receive()

    async def send(message: Message) -> None:
        raise OSError("client went away")

    response = ArchiveResponse(body(), headers={}, on_close=on_close)
    await response({"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET", "headers": []}, receive, send)
    assert closed == [True]
    assert not started


async def test_on_close_runs_after_a_complete_stream() -> None:
    sent: list[Message] = []
    closed = []

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    async def on_close() -> None:
        closed.append(True)

    receive = server_receive()

    async def send(message: Message) -> None:
        sent.append(message)

    response = ArchiveResponse(body(), headers={}, on_close=on_close)
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "GET", "headers": []}
    await response(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert b"".join(m.get("body", b"") for m in sent) == b"abc"
    assert closed == [True]
