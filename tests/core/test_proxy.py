"""Upstream calls go through the operator's HTTP proxy (HTTP_PROXY / NO_PROXY), as they would with a
plain httpx client: a real forward proxy on loopback sees the order look-up and every download."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import create_app
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Sim, service_settings
from tests.support.forward_proxy import ForwardProxy
from tests.support.zipcheck import check_zip


@pytest.fixture
def proxy() -> Iterator[tuple[str, ForwardProxy]]:
    forward = ForwardProxy()
    with serve(forward) as url:
        yield url, forward


def _download(simulator: Sim, tmp_path: Path) -> tuple[str, httpx.Response]:
    order = simulator.state.seed_order(name="Proxied", images=[SeedImage(name=f"{n}.jpg", size=5000) for n in range(3)])
    app = create_app(service_settings(simulator.url, tmp_path / "data", cache_ttl_seconds=0))
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        return str(order["order_id"]), client.get(f"/orders/{order['order_id']}/images")


def test_upstream_calls_go_through_http_proxy(
    simulator: Sim, proxy: tuple[str, ForwardProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_url, forward = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    order_id, response = _download(simulator, tmp_path)
    assert response.status_code == 200
    assert sorted(n for n in check_zip(response.content) if n.endswith(".jpg")) == ["0.jpg", "1.jpg", "2.jpg"]
    urls = [url for url, _ in forward.seen]
    assert any(u.startswith(f"{simulator.url}/v3/orders/{order_id}") for u in urls), urls
    assert sum("/enhanced" in u for u in urls) == 3, urls  # every download went through the proxy
    assert all(keyed for url, keyed in forward.seen if "/v3/" in url)  # the API still gets its key


def test_no_proxy_hosts_are_reached_directly(
    simulator: Sim, proxy: tuple[str, ForwardProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_url, forward = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _, response = _download(simulator, tmp_path)
    assert response.status_code == 200
    assert forward.seen == []
