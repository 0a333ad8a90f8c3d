"""OpenTelemetry: spans exported over real OTLP/HTTP to a loopback receiver, decoded and checked."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import create_app
from app.ops.tracing import build_provider
from harness.servers import serve
from simulator import Fault, SeedImage
from tests.conftest import Sim, service_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@dataclass
class Receiver:
    url: str
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A minimal OTLP/HTTP collector: accepts protobuf trace exports on /v1/traces."""
    lock = threading.Lock()
    found = Receiver("")

    async def traces(request: Request) -> Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.body())
        with lock:
            found.requests.append(body)
            found.paths.append(request.url.path)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    with serve(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        found.url = url
        yield found


def attributes(span: Span) -> dict[str, object]:
    values: dict[str, object] = {}
    for kv in span.attributes:
        v = kv.value
        values[kv.key] = v.string_value or v.int_value or v.bool_value or v.double_value
    return values


def test_request_order_fetch_and_each_image_are_spans_not_each_chunk(
    simulator: Sim, receiver: Receiver, tmp_path: Path
) -> None:
    order = simulator.state.seed_order(
        name="Traced", images=[SeedImage(name=f"{n}.jpg", size=3_000_000) for n in range(3)]
    )
    order_id = str(order["order_id"])
    broken = order["images"][2]["image_id"]
    simulator.state.add_fault(Fault(kind="asset_404", image_id=broken))
    settings = service_settings(simulator.url, tmp_path, otel_exporter_otlp_endpoint=receiver.url + "/")
    with serve(create_app(settings)) as url:
        response = httpx.get(
            f"{url}/v1/orders/{order_id}/images",
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            timeout=60,
        )
        assert response.status_code == 200
        assert len(response.content) > 6_000_000  # many chunks went by
    # leaving `serve` shut the app down, which flushed its spans to the receiver
    assert set(receiver.paths) == {"/v1/traces"}
    spans = [s for s in receiver.spans() if s.trace_id.hex() == TRACE_ID]
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["GET /v1/orders/{order_id}/images", "autoenhance image download",
                               "autoenhance order fetch"]
    (server,) = by_name["GET /v1/orders/{order_id}/images"]
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.parent_span_id.hex() == PARENT_ID  # continues the caller's trace
    assert attributes(server)["http.response.status_code"] == 200
    assert attributes(server)["http.route"] == "/v1/orders/{order_id}/images"
    assert [event.name for event in server.events] == ["first body byte"]
    (fetch,) = by_name["autoenhance order fetch"]
    assert fetch.parent_span_id == server.span_id
    assert attributes(fetch)["autoenhance.order_id"] == order_id
    downloads = by_name["autoenhance image download"]
    assert len(downloads) == 3  # one per image, however many chunks each took
    assert all(d.parent_span_id == server.span_id for d in downloads)
    failed = [d for d in downloads if d.status.code == Status.STATUS_CODE_ERROR]
    assert [attributes(d)["autoenhance.image_id"] for d in failed] == [broken]
    ok = [d for d in downloads if d.status.code != Status.STATUS_CODE_ERROR]
    assert all(attributes(d)["autoenhance.bytes"] == 3_000_000 for d in ok)
    # the server span lasts the whole stream: it ends after every image download
    assert server.end_time_unix_nano >= max(d.end_time_unix_nano for d in downloads)
    assert len(spans) == 5


def test_job_spans_service_name_and_log_correlation(
    simulator: Sim, receiver: Receiver, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    order_id = str(simulator.state.seed_order(name="Job", images=[SeedImage(name="a.jpg", size=1000)])["order_id"])
    settings = service_settings(simulator.url, tmp_path, otel_exporter_otlp_endpoint=receiver.url, log_level="INFO")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        job = client.post(f"/v1/orders/{order_id}/jobs").json()
        while client.get(f"/v1/jobs/{job['job_id']}").json()["status"] not in ("completed", "completed_with_errors", "failed"):
            time.sleep(0.05)
    names = [s.name for s in receiver.spans()]
    assert "POST /v1/orders/{order_id}/jobs" in names
    assert names.count("autoenhance image download") == 1
    resource = {kv.key: kv.value.string_value for kv in receiver.requests[0].resource_spans[0].resource.attributes}
    assert resource["service.name"] == "autoenhance-batch"
    (download,) = [s for s in receiver.spans() if s.name == "autoenhance image download"]
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line["event"] == "image downloaded"]
    assert logged["trace_id"] == download.trace_id.hex()  # the log line leads to its trace
    assert logged["span_id"] in {span.span_id.hex() for span in receiver.spans()}


def test_no_endpoint_means_no_tracing(simulator: Sim, receiver: Receiver, tmp_path: Path) -> None:
    settings = service_settings(simulator.url, tmp_path)
    assert settings.otel_exporter_otlp_endpoint is None
    assert build_provider(settings) is None
    app = create_app(settings)
    assert "RequestTracing" not in {m.cls.__name__ for m in app.user_middleware}  # type: ignore[attr-defined]
    with serve(app) as url:
        assert httpx.get(f"{url}/health").status_code == 200
    assert receiver.requests == []


def test_a_job_run_by_a_worker_is_traced_like_one_run_by_the_api(
    simulator: Sim, receiver: Receiver, tmp_path: Path, redis_prefix: str
) -> None:
    """`python -m app.worker` builds its services through the same wiring as the API: its order fetch
    and image downloads are spans too. The API here is not traced, so every span came from the worker."""
    from app.worker import run
    from tests.support.cluster import REDIS_URL

    images = [SeedImage(name=f"{n}.jpg", size=20_000) for n in range(2)]
    order_id = str(simulator.state.seed_order(name="Worker traced", images=images)["order_id"])
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix, "job_workers_in_api": False}
    api_settings = service_settings(simulator.url, tmp_path / "api", **shared)
    worker_settings = service_settings(
        simulator.url, tmp_path / "worker", otel_exporter_otlp_endpoint=receiver.url, **shared
    )
    started = threading.Event()
    worker: dict[str, Any] = {}

    def serve_jobs() -> None:
        async def main() -> None:
            worker["loop"], worker["stop"] = asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await run(worker_settings, worker["stop"])

        asyncio.run(main())

    thread = threading.Thread(target=serve_jobs, name="worker", daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        with serve(create_app(api_settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
            job = client.post(f"/v1/orders/{order_id}/jobs").json()
            deadline = time.monotonic() + 30
            while (status := client.get(job["status_url"]).json())["status"] not in ("completed", "completed_with_errors", "failed"):
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            assert status["status"] == "completed" and status["downloaded"] == 2
    finally:
        worker["loop"].call_soon_threadsafe(worker["stop"].set)
        thread.join(30)
    assert not thread.is_alive()
    names = [span.name for span in receiver.spans()]  # the worker flushed its spans as it stopped
    assert names.count("autoenhance image download") == 2
    assert names.count("autoenhance order fetch") == 1  # a job queued elsewhere fetches its order again
