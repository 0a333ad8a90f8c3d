"""GET /v1/api/orders: the account's orders a page at a time, for the operator only."""

from __future__ import annotations

from collections.abc import Callable

from simulator import SeedImage
from tests.conftest import Service, Sim

ADMIN = {"X-Admin-Token": "admin-secret"}


def test_pages_through_every_order_newest_first(simulator: Sim, start_service: Callable[..., Service]) -> None:
    seeded = [simulator.state.seed_order(name=f"Order {i}", images=[SeedImage(name="a.jpg")])["order_id"]
              for i in range(3)]
    service = start_service(admin_token="admin-secret")
    seen: list[str] = []
    offset = None
    with service.client(headers=ADMIN) as client:
        for _ in range(5):
            params = {"per_page": 2} | ({"offset": offset} if offset else {})
            page = client.get("/v1/api/orders", params=params).json()
            seen += [order["order_id"] for order in page["orders"]]
            offset = page["next_offset"]
            if offset is None:
                break
    assert seen == list(reversed(seeded))


def test_a_made_up_offset_is_the_callers_mistake_not_a_bad_gateway(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(admin_token="admin-secret")
    response = service.client(headers=ADMIN).get("/v1/api/orders", params={"offset": "not-a-page"})
    assert response.status_code == 422
    assert "next_offset of a previous page" in response.json()["detail"]


def test_needs_the_admin_token_outside_demo_mode(start_service: Callable[..., Service]) -> None:
    assert start_service(admin_token="admin-secret").client().get("/v1/api/orders").status_code == 401
    assert start_service().client().get("/v1/api/orders").status_code == 403
