"""The benchmark's references must be right, or its ratios mean nothing: check them on a small order."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from bench.limit import fetch_direct
from bench.naive import create_app as create_naive
from bench.nginx import curl_parallel, nginx
from bench.profile import component
from harness import processes
from harness.servers import serve
from simulator import SimulatorState
from tests.conftest import Sim


@pytest.fixture
def sim_state() -> SimulatorState:
    return SimulatorState(api_keys={processes.SIM_KEY})


def test_naive_baseline_sends_every_image_in_one_zip(simulator: Sim) -> None:
    order_id = processes.seed(simulator.url, 3, 20_000)
    with serve(create_naive(simulator.url, processes.SIM_KEY)) as url:
        response = httpx.get(f"{url}/orders/{order_id}/images", timeout=30)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert sorted(info.file_size for info in archive.infolist()) == [20_000] * 3


def test_naive_baseline_reports_failures_and_422_when_nothing_succeeded(simulator: Sim) -> None:
    order_id = processes.seed(simulator.url, 2, 20_000)
    httpx.post(f"{simulator.url}/_simulator/faults", json={"kind": "status", "status": 404}).raise_for_status()
    with serve(create_naive(simulator.url, processes.SIM_KEY)) as url:
        response = httpx.get(f"{url}/orders/{order_id}/images", timeout=30)
    assert response.status_code == 422


def test_limit_client_fetches_every_byte_of_the_order(simulator: Sim) -> None:
    order_id = processes.seed(simulator.url, 4, 30_000)
    fetch = fetch_direct(simulator.url, order_id, workers=2)
    assert fetch.size == 4 * 30_000
    assert 0 < fetch.ttfb <= fetch.total
    assert simulator.state.stats["enhanced"] == 4


def test_profile_counts_spool_work_apart_from_the_http_client() -> None:
    reading = ["Batch._fetch", "AutoenhanceClient._read_body", "Response.aiter_bytes", "SocketStream.receive"]
    spooling = ["Batch._fetch", "AutoenhanceClient._read_body", "Spool.write"]
    assert component(reading).startswith("upstream: reading")
    assert component(spooling).startswith("spool")
    assert component(["Runner.run", "select"]) == "event loop and other"


def test_nginx_reference_serves_the_order_the_redirects_and_every_byte(simulator: Sim, tmp_path: Path) -> None:
    """The C reference plays Autoenhance faithfully enough for the service, and curl's figure counts every byte."""
    order_id = processes.seed(simulator.url, 4, 30_000)
    order = httpx.get(f"{simulator.url}/v3/orders/{order_id}").raise_for_status().json()
    with nginx(tmp_path) as web:
        ids = web.add_order(order, 50_000)
        redirect = httpx.get(f"{web.url}/v3/images/{ids[0]}/enhanced")
        assert redirect.status_code == 302 and redirect.headers["location"] == f"/assets/{ids[0]}.jpg"
        fetch = curl_parallel([f"{web.url}/v3/images/{image_id}/enhanced" for image_id in ids])
        assert fetch.size == 4 * 50_000 and fetch.total > 0
        with processes.service(web.url, tmp_path / "svc", cache_max_bytes=0) as svc:
            response = httpx.get(f"{svc.url}/orders/{order_id}/images", timeout=30)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        images = [info for info in archive.infolist() if not info.filename.startswith("_")]
        assert sorted(info.file_size for info in images) == [50_000] * 4
        assert len({archive.read(info) for info in images}) == 4  # distinct bytes per image
