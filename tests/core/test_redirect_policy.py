"""Where an image download may be redirected: the API's origin, ALLOWED_ASSET_HOSTS, or public https.

A hostile upstream answers `/enhanced` with 302s to the service's own /health, to another service on
the loopback (by address and by name, over http and https) and to the cloud metadata address. Each
such image is reported as failed, nothing is fetched from those targets, and the refusals do not
open the circuit breaker for other callers.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import create_app
from app.config import Settings
from app.core.network.trusted_hosts import TrustedHosts, env_entries
from harness.servers import free_port, serve
from tests.conftest import service_settings
from tests.support.forward_proxy import ForwardProxy
from tests.support.hostile_upstream import ORDER_ID, Bystander, HostileUpstream, image_bytes


@pytest.fixture
def bystander() -> Iterator[tuple[str, Bystander]]:
    app = Bystander()
    with serve(app) as url:
        yield url, app


def _members(response: httpx.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_redirects_to_private_targets_are_refused_and_reported(
    bystander: tuple[str, Bystander], tmp_path: Path
) -> None:
    other_url, other = bystander
    other_port = other_url.rsplit(":", 1)[1]
    service_port = free_port()
    redirects = {
        "good": "/asset/good",  # the API's own origin: followed
        "own-health": f"http://127.0.0.1:{service_port}/health",
        "loopback-http": f"{other_url}/secret",
        "loopback-https-literal": f"https://127.0.0.1:{other_port}/secret",
        "loopback-https-name": f"https://localhost:{other_port}/secret",  # refused when the name resolves
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "metadata-https": "https://169.254.169.254/latest/meta-data/",
    }
    upstream = HostileUpstream(redirects)
    # A breaker this tight would open on the first two refusals if they counted as upstream failures.
    with serve(upstream) as upstream_url:
        settings = service_settings(upstream_url, tmp_path, breaker_threshold=2, cache_ttl_seconds=0)
        with serve(create_app(settings), port=service_port) as url:
            response = httpx.get(f"{url}/orders/{ORDER_ID}/images", timeout=30)
            assert response.status_code == 200, response.text
            members = _members(response)
            assert members["good.jpg"] == image_bytes("good")
            images = [name for name in members if not name.startswith("_")]
            assert images == ["good.jpg"]
            report = members["_download_report.txt"].decode()
            for image_id in redirects.keys() - {"good"}:
                assert image_id in report
            assert report.count("redirect refused") == len(redirects) - 1
            assert "ALLOWED_ASSET_HOSTS" in report
            assert "169.254.169.254 is a cloud metadata address" in report
            assert "localhost resolves to 127.0.0.1 is a loopback address" in report
            assert other.hits == 0

            # the refusals did not open the breaker: the next order (same upstream) is served again
            again = httpx.get(f"{url}/orders/{ORDER_ID}/images", timeout=30)
            assert again.status_code == 200
            stats = httpx.get(f"{url}/api/stats", timeout=10).json()
    assert other.hits == 0
    assert upstream.hits["asset"] == 2
    assert stats["breaker"] == "closed"


def test_allowed_asset_hosts_admits_a_listed_private_host(
    bystander: tuple[str, Bystander], tmp_path: Path
) -> None:
    other_url, other = bystander
    host_port = other_url.removeprefix("http://")
    upstream = HostileUpstream({"listed": f"{other_url}/photo", "unlisted-port": f"http://127.0.0.1:{free_port()}/x"})
    with serve(upstream) as upstream_url:
        settings = service_settings(upstream_url, tmp_path, allowed_asset_hosts=[host_port], cache_ttl_seconds=0)
        with serve(create_app(settings)) as url:
            response = httpx.get(f"{url}/orders/{ORDER_ID}/images", timeout=30)
    assert response.status_code == 200, response.text
    members = _members(response)
    assert members["listed.jpg"] == b"internal secret"  # the operator said this host is an asset store
    assert "unlisted-port" in members["_download_report.txt"].decode()  # host:port entries name one port
    assert other.hits == 1


def test_through_a_proxy_the_target_name_is_checked_before_the_proxy_is_asked(
    bystander: tuple[str, Bystander], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy dials the asset host, so the service resolves the name itself first and refuses a private one."""
    other_url, other = bystander
    other_port = other_url.rsplit(":", 1)[1]
    forward = ForwardProxy()
    upstream = HostileUpstream({"good": "/asset/good", "sneaky": f"https://localhost:{other_port}/secret"})
    with serve(forward) as proxy_url, serve(upstream) as upstream_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with serve(create_app(service_settings(upstream_url, tmp_path, cache_ttl_seconds=0))) as url:
            response = httpx.get(f"{url}/orders/{ORDER_ID}/images", timeout=30)
    assert response.status_code == 200, response.text
    members = _members(response)
    assert members["good.jpg"] == image_bytes("good")
    assert "localhost resolves to 127.0.0.1 is a loopback address" in members["_download_report.txt"].decode()
    seen = [seen_url for seen_url, _ in forward.seen]
    assert any("/asset/good" in u for u in seen), seen  # the proxy is in use
    assert not any("localhost" in u for u in seen), seen
    assert other.hits == 0


@pytest.mark.parametrize(
    ("entry", "host", "port", "trusted"),
    [
        ("assets.example", "assets.example", 8443, True),  # `host`: every port
        ("Assets.Example:8080", "ASSETS.example", 8080, True),  # host names compare case-insensitively
        ("assets.example:8080", "assets.example", 8081, False),  # `host:port`: that port only
        ("assets.example:8080", "other.example", 8080, False),
        ("[::1]:9000", "[::1]", 9000, True),  # IPv6 in brackets, asked with or without them
        ("[::1]:9000", "::1", 9000, True),
        ("[::1]", "::1", 1234, True),
    ],
)
def test_trusted_hosts_entries(entry: str, host: str, port: int, trusted: bool) -> None:
    assert TrustedHosts.parse([entry]).trusts(host, port) is trusted


def test_the_api_origin_is_trusted_on_its_own_port_and_entries_are_read_as_settings_reads_them() -> None:
    api = TrustedHosts.origin("https://API.example/base")
    assert api.trusts("api.example", 443) and not api.trusts("api.example", 80)
    assert TrustedHosts.origin("http://[::1]:8000").trusts("::1", 8000)
    assert not TrustedHosts().trusts("api.example", 443)
    written = " cdn.example , ,[::1]:9000,"
    assert env_entries({"ALLOWED_ASSET_HOSTS": written}) == ["cdn.example", "[::1]:9000"]
    assert Settings(allowed_asset_hosts=written).allowed_asset_hosts == env_entries({"ALLOWED_ASSET_HOSTS": written})
    assert env_entries({}) == []
