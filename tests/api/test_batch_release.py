"""Whatever fails once a batch has opened, its download slots, spools and single-flight claim are released.

Each test serves the real app over loopback HTTP against the simulator, makes one stage of a streamed
batch fail (an exception injected into that stage's code, in this process, where the service runs),
and checks what the caller got (an error, a cut stream, or a ZIP whose report names the image: never
a hang, never a silently broken ZIP), that the budget's in-flight count, the open batches, the claims
and the spool files all return to zero, and that the next request completes normally.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import Message, Send

from app.api import responses
from app.api.routes import batch as batch_route
from app.archives import cache as archive_cache
from app.archives import layout_store as layouts
from app.core import engine, report
from app.core.models import ImageInfo
from app.core.upstream import client as upstream
from app.core.zip import format as zipformat
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.jobs_helpers import poll
from tests.support.spools import open_spool_files
from tests.support.zipcheck import check_zip

IMAGES = 6


class Injected(RuntimeError):
    """The failure a test puts into one stage of the batch."""


def failing_at(original: Callable[..., Any], call: int) -> Callable[..., Any]:
    """`original`, except that its `call`-th call (counted from 1) raises Injected."""
    calls = itertools.count(1)
    if inspect.iscoroutinefunction(original):

        async def failing_async(*args: Any, **kwargs: Any) -> Any:
            if next(calls) == call:
                raise Injected(f"{original.__qualname__} call {call}")
            return await original(*args, **kwargs)

        return failing_async

    def failing(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == call:
            raise Injected(f"{original.__qualname__} call {call}")
        return original(*args, **kwargs)

    return failing


def broken_send(original: Callable[..., Any]) -> Callable[..., Any]:
    """ArchiveResponse.stream_response whose transport fails on the second piece of the body."""

    async def stream_response(self: responses.ArchiveResponse, send: Send) -> None:
        pieces = itertools.count(1)

        async def send_until_broken(message: Message) -> None:
            if message["type"] == "http.response.body" and next(pieces) == 2:
                raise Injected("the response's transport failed")
            await send(message)

        await original(self, send_until_broken)

    return stream_response


@dataclass(frozen=True)
class Stage:
    name: str
    target: Any
    attribute: str
    call: int
    outcome: str
    """`error`: an error answer before any byte of ZIP; `cut`: a 200 whose body ends unfinished (the
    client sees the connection end without the last chunk); `report`: a whole ZIP naming the image."""
    wrap: Callable[[Callable[..., Any], int], Callable[..., Any]] = failing_at


STAGES = [
    # the third image's planning fails after the first two downloads have started
    Stage("planning", ImageInfo, "skip_reason", 3, "error"),
    Stage("spool creation", engine, "Spool", 2, "report"),
    Stage("download", upstream.AutoenhanceClient, "download_enhanced", 2, "report"),
    Stage("layout record (start)", layouts.LayoutStore, "record", 1, "error"),
    Stage("response headers", batch_route, "archive_headers", 1, "error"),
    Stage("member write", zipformat.Encoder, "member", 2, "cut"),
    Stage("layout record (member)", layouts.Recording, "member", 2, "cut"),
    Stage("report", report, "report_text", 1, "cut"),
    Stage("manifest", report, "manifest_json", 1, "cut"),
    Stage("layout record (end)", layouts.Recording, "finish", 1, "cut"),
    Stage("cache write", archive_cache.CacheWriter, "write", 2, "cut"),
    Stage("response send", responses.ArchiveResponse, "stream_response", 0, "cut", lambda original, _: broken_send(original)),
]


def seed_order(simulator: Sim) -> str:
    images = [SeedImage(name=f"room {n}.jpg", size=40_000) for n in range(1, IMAGES + 1)]
    images.append(SeedImage(name="porch.jpg", status="error", status_reason="blurred"))  # so a report is written
    return str(simulator.state.seed_order(name="12 Oak Street", images=images)["order_id"])


def held(service: Service) -> dict[str, int]:
    services = service.app.state.services
    return {
        "in_flight": services.engine.limiter.in_use,
        "active_batches": services.engine.active_batches,
        "claims": services.archives.flights.leading,
        "spool_files": open_spool_files(service.settings.spool_dir),
    }


def settled(service: Service, timeout: float = 10.0) -> dict[str, int]:
    """What the service still holds, measured until all is released or `timeout` passes.

    Cleanup runs on the server's loop after the client has seen the end of its response, so the
    counts are read until they reach zero; a real leak never does."""
    deadline = time.monotonic() + timeout
    while any((now := held(service)).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def fetch(service: Service, order_id: str) -> tuple[int, bytes, Exception | None]:
    """(status, body, the error that ended the body early if any); a hang fails on the read timeout."""
    with (
        httpx.Client(base_url=service.url, timeout=httpx.Timeout(15.0)) as client,
        client.stream("GET", f"/orders/{order_id}/images") as response,
    ):
        body = b""
        try:
            for chunk in response.iter_raw():
                body += chunk
        except httpx.RemoteProtocolError as exc:  # the connection ended before the last chunk
            return response.status_code, body, exc
        return response.status_code, body, None


@pytest.mark.parametrize("stage", STAGES, ids=[s.name for s in STAGES])
def test_a_failure_at_any_stage_releases_slots_spools_and_claims(
    stage: Stage, simulator: Sim, start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    # images spooled on disk, the cache on (so the build claims its key), one order at most 4 downloads
    service = start_service(spool_memory_bytes=0, max_concurrent_downloads=4, rate_limit="")
    order_id = seed_order(simulator)
    monkeypatch.setattr(stage.target, stage.attribute, stage.wrap(getattr(stage.target, stage.attribute), stage.call))

    status, body, cut = fetch(service, order_id)

    if stage.outcome == "error":
        assert status == 500 and cut is None
        assert body.startswith(b"{") and b"Internal error" in body  # JSON, nothing of the exception leaked
    elif stage.outcome == "cut":
        assert status == 200 and cut is not None, "a stream that failed must not end as if complete"
    else:
        assert status == 200 and cut is None
        members = check_zip(body)
        assert "internal error (Injected)" in members["_download_report.txt"].decode()
    assert settled(service) == {"in_flight": 0, "active_batches": 0, "claims": 0, "spool_files": 0}

    monkeypatch.undo()
    status, body, cut = fetch(service, order_id)
    assert status == 200 and cut is None
    assert sorted(check_zip(body)) == sorted(
        [f"room {n}.jpg" for n in range(1, IMAGES + 1)] + ["_download_report.txt", "_manifest.json"]
    )
    assert settled(service) == {"in_flight": 0, "active_batches": 0, "claims": 0, "spool_files": 0}


JOB_STAGES = [s for s in STAGES if s.name in ("member write", "report", "manifest")]


@pytest.mark.parametrize("stage", JOB_STAGES, ids=[s.name for s in JOB_STAGES])
def test_a_job_whose_archive_fails_ends_failed_and_releases_everything(
    stage: Stage, simulator: Sim, start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job door writes the same archive to a file: a failure there ends the job (it waited forever
    for a member when the report or manifest failed), and the next job completes."""
    service = start_service(spool_memory_bytes=0, max_concurrent_downloads=4, rate_limit="")
    order_id = seed_order(simulator)
    monkeypatch.setattr(stage.target, stage.attribute, stage.wrap(getattr(stage.target, stage.attribute), stage.call))
    with service.client() as client:
        job_id = client.post(f"/orders/{order_id}/jobs").json()["job_id"]
        status = poll(client, job_id, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
        assert status["status"] == "failed" and "internal error" in status["error"]
        assert settled(service) == {"in_flight": 0, "active_batches": 0, "claims": 0, "spool_files": 0}
        monkeypatch.undo()
        job_id = client.post(f"/orders/{order_id}/jobs").json()["job_id"]
        status = poll(client, job_id, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
        assert status["status"] == "completed_with_errors" and status["downloaded"] == IMAGES  # porch.jpg
        download = client.get(f"/jobs/{job_id}/download")
        assert download.status_code == 200 and len(check_zip(download.content)) == IMAGES + 2
    assert settled(service) == {"in_flight": 0, "active_batches": 0, "claims": 0, "spool_files": 0}
