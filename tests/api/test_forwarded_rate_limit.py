"""Behind a load balancer, the rate limit keys on the address the balancer saw, not on what the
client wrote into X-Forwarded-For.

A real nginx stands in for the platform's load balancer: it appends the address it was reached
from to X-Forwarded-For, as hosted balancers do. Clients connect to it from distinct loopback
addresses (127.0.0.2, 127.0.0.3) and write a different made-up address into the header on every
request. With TRUSTED_PROXY_HOPS=1 the caller is the entry the balancer appended, whatever
uvicorn's FORWARDED_ALLOW_IPS says ("*" takes the leftmost entry, the one the client chose).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app import create_app
from app.api.forwarded import forwarded_client
from bench.nginx import binary, forwarding_proxy
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Sim, service_settings
from tests.support.jobs_helpers import seed
from tests.support.webhook_receiver import FAST_RETRIES, serving

ROOT = Path(__file__).resolve().parents[2]
LIMITED_PATH = "/orders/not-a-uuid/images"  # a limited route answered 400 before any upstream call


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.fixture(params=["*", "192.0.2.1"], ids=["uvicorn-trusts-any-peer", "uvicorn-trusts-not-the-balancer"])
def balanced(request: pytest.FixtureRequest, simulator: Sim, tmp_path: Path) -> Iterator[str]:
    """The service (RATE_LIMIT 5/minute, one trusted hop) behind nginx; nginx's URL."""
    if binary() is None:
        pytest.skip("nginx is not installed (make system-deps)")
    settings = service_settings(
        simulator.url, tmp_path / "data", rate_limit="5/minute", trusted_proxy_hops=1, **FAST_RETRIES
    )
    with (
        serve(create_app(settings), forwarded_allow_ips=request.param, proxy_headers=True) as url,
        forwarding_proxy(tmp_path, url) as front,
    ):
        yield front


def test_spoofed_forwarded_for_does_not_buy_fresh_rate_limit_buckets(balanced: str) -> None:
    with client_from("127.0.0.2") as attacker:
        statuses = [
            attacker.get(balanced + LIMITED_PATH, headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
            for n in range(8)
        ]
    assert statuses == [400] * 5 + [429] * 3  # before: 8 of 8 through, each "from" a new address
    with client_from("127.0.0.3") as neighbour:  # another real address keeps its own allowance
        spoofing_the_attacker = neighbour.get(balanced + LIMITED_PATH, headers={"X-Forwarded-For": "127.0.0.2"})
        assert spoofing_the_attacker.status_code == 400


def test_links_in_callbacks_use_the_scheme_the_balancer_was_reached_by(balanced: str, simulator: Sim) -> None:
    """The balancer terminates TLS and says so in X-Forwarded-Proto: absolute links must be https."""
    order_id = seed(simulator, SeedImage(name="front.jpg"))
    with serving() as hooks, client_from("127.0.0.2") as client:
        created = client.post(f"{balanced}/orders/{order_id}/jobs", json={"callback_url": f"{hooks.url}/h"})
        assert created.status_code == 202, created.text
        (call,) = hooks.wait_for(1)
    assert call.verified()["download_url"].startswith("https://127.0.0.1:")


def test_the_caller_is_the_entry_the_trusted_hops_wrote() -> None:
    assert forwarded_client(["6.6.6.6", "203.0.113.9"], 1) == "203.0.113.9"
    assert forwarded_client(["6.6.6.6", "203.0.113.9", "10.0.0.5"], 2) == "203.0.113.9"
    assert forwarded_client(["203.0.113.9"], 2) == "203.0.113.9"  # fewer entries than hops: all from proxies
    assert forwarded_client(["[2001:db8::1]:4711"], 1) == "2001:db8::1"
    assert forwarded_client(["203.0.113.9:4711"], 1) == "203.0.113.9"
    assert forwarded_client([], 1) is None


def test_render_blueprint_trusts_one_hop_not_any_forwarded_for() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    web = next(s for s in blueprint["services"] if s["type"] == "web")
    env = {e["key"]: e.get("value") for e in web["envVars"] if "key" in e}
    assert env.get("TRUSTED_PROXY_HOPS") == "1"
    assert env.get("FORWARDED_ALLOW_IPS") != "*"  # uvicorn would take the leftmost, client-chosen entry
