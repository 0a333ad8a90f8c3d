"""Sentry, when SENTRY_DSN is set: errors reach it, secrets do not.

The service runs as its own process (Sentry is process-global) with a DSN pointing at a loopback
recorder that accepts Sentry envelopes.
"""

from __future__ import annotations

import gzip
import time
import uuid
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from harness import processes
from harness.servers import serve


def recorder() -> tuple[Starlette, list[bytes]]:
    received: list[bytes] = []

    async def envelope(request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        received.append(body)
        return JSONResponse({"id": uuid.uuid4().hex})

    return Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])]), received


def test_upstream_errors_reach_sentry_without_secrets(tmp_path: Path) -> None:
    app, received = recorder()
    with serve(app) as sentry_url, processes.simulator() as sim:
        dsn = sentry_url.replace("http://", "http://publickey@") + "/1"
        with processes.service(sim.url, tmp_path, sentry_dsn=dsn, service_api_key="svc-secret") as svc:
            order_id = processes.seed(sim.url, 1, 100)
            fault = {"kind": "order_status", "status": 401}
            httpx.post(f"{sim.url}/_simulator/faults", json=fault, timeout=10).raise_for_status()
            response = httpx.get(f"{svc.url}/orders/{order_id}/images", headers={"X-API-Key": "svc-secret"}, timeout=30)
            assert response.status_code == 502
            deadline = time.monotonic() + 10
            while not any(b"rejected our key" in body for body in received) and time.monotonic() < deadline:
                time.sleep(0.1)
    events = b"\n".join(received)
    assert b"rejected our key" in events
    assert processes.SIM_KEY.encode() not in events  # the upstream key
    assert b"svc-secret" not in events  # the caller's key
