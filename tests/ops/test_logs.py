"""JSON log lines carry request_id, order_id and job_id: bound where known, null otherwise."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from simulator import SeedImage
from tests.conftest import Service, Sim


def test_every_line_has_the_context_keys_and_job_lines_name_their_job(
    simulator: Sim, start_service: Callable[..., Service], capfd: pytest.CaptureFixture[str]
) -> None:
    service = start_service(log_level="INFO")  # started here so its log handler writes to the captured stderr
    order_id = str(simulator.state.seed_order(name="Logs", images=[SeedImage(name="a.jpg", size=100)])["order_id"])
    with service.client() as client:
        client.get("/health", headers={"X-Request-ID": "req-health"})
        accepted = client.post(f"/v1/orders/{order_id}/jobs", headers={"X-Request-ID": "req-job"})
        job_id = accepted.json()["job_id"]
        assert accepted.headers["x-request-id"] == "req-job"
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    httpx.get(f"{service.url}/health", timeout=10)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    ours = [line for line in lines if str(line.get("logger", "")).startswith("app")]
    assert ours
    assert all({"request_id", "order_id", "job_id"} <= line.keys() for line in ours), ours
    job_lines = [line for line in ours if line["event"] in ("job created", "job started", "job finished")]
    assert {line["event"] for line in job_lines} == {"job created", "job started", "job finished"}
    for line in job_lines:
        assert line["job_id"] == job_id
        assert line["order_id"] == order_id
        assert line["request_id"] == "req-job"  # the job's lines lead back to the request that made it
    engine_lines = [line for line in ours if line["logger"] == "app.engine"]
    assert engine_lines and all(line["job_id"] == job_id for line in engine_lines)
