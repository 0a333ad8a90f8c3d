"""Secrets stay secret: neither the caller's key nor the upstream key reaches a log line (even at DEBUG,
even on upstream errors), and a key in the query string authenticates nothing. (That the upstream key
goes to the API's host only, never to the asset host a redirect points to, is pinned in test_batch.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulator import Fault, SeedImage, SimulatorState
from tests.conftest import TEST_KEY, Service

CALLER_KEY = "caller-secret-5f1e2d"


def test_no_secret_in_logs_or_query_strings(
    start_service: Callable[..., Service], sim_state: SimulatorState, capfd: pytest.CaptureFixture[str]
) -> None:
    service = start_service(service_api_key=CALLER_KEY, log_level="DEBUG", cache_ttl_seconds=0, rate_limit="2/minute",
                            retry_attempts=2)
    ok = sim_state.seed_order(images=[SeedImage(name="a.jpg", size=3000), SeedImage(name="b.jpg", size=3000)])
    bad = sim_state.seed_order(images=[SeedImage(name="c.jpg", size=3000)])
    sim_state.add_fault(Fault(kind="order_status", status=401, order_id=bad["order_id"]))
    sim_state.add_fault(Fault(kind="status", status=500, image_id=ok["images"][1]["image_id"]))
    with service.client() as anonymous:
        for params in ({"x-api-key": CALLER_KEY}, {"api_key": CALLER_KEY}):
            response = anonymous.get(f"/orders/{ok['order_id']}/images", params=params)
            assert response.status_code == 401  # a key in the URL would end in access logs: never accepted
    with service.client(headers={"X-API-Key": CALLER_KEY}) as client:
        assert client.get(f"/orders/{ok['order_id']}/images").status_code == 200  # with a failed image
        assert client.get(f"/orders/{bad['order_id']}/images").status_code == 502  # upstream rejected our key
        assert client.get(f"/orders/{ok['order_id']}/images").status_code == 429  # over the limit
    out, err = capfd.readouterr()
    logs = out + err
    assert "order fetch rejected our key" in logs  # the error paths did log
    assert CALLER_KEY not in logs
    assert TEST_KEY not in logs
