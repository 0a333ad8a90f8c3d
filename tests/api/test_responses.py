"""ArchiveResponse cleans up on every path, including ones real HTTP cannot produce on demand.

A client that is gone before the response starts makes the very first `send` fail, so the body
generator never starts, and closing an unstarted generator runs none of its `finally` blocks. That
window (between the first image succeeding and the headers going out) is a race on a real socket,
so this test drives the ASGI callable directly with a `send` that fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from starlette.types import Message, Receive

from app.api.responses import ArchiveResponse
from simulator import SeedImage, SimulatorState
from tests.conftest import Service


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


def test_range_errors_answer_json(start_service: Callable[..., Service], sim_state: SimulatorState) -> None:
    """A cached archive is served as a file with Range; its refusals are JSON like every other error."""
    order = sim_state.seed_order(images=[SeedImage(name="a.jpg", size=3000)])
    service = start_service(rate_limit="")
    path = f"/v1/orders/{order['order_id']}/images"
    with service.client() as client:
        whole = client.get(path)
        assert whole.status_code == 200 and whole.headers["x-cache"] == "miss"
        size = len(whole.content)
        ranged = client.get(path, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == whole.content[10:20]
        past_end = client.get(path, headers={"Range": f"bytes={size + 10}-"})
        malformed = client.get(path, headers={"Range": "lines=1-2"})
        backwards = client.get(path, headers={"Range": "bytes=20-10"})
    assert past_end.status_code == 416 and past_end.headers["content-range"] == f"bytes */{size}"
    assert str(size) in past_end.json()["detail"]
    for refused in (past_end, malformed, backwards):
        assert refused.headers["content-type"] == "application/json", refused.text
    assert malformed.status_code == 400 and "Range" in malformed.json()["detail"]
    assert backwards.status_code == 400 and "Range" in backwards.json()["detail"]
