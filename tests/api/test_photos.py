"""GET /orders/{id}/photos and /images/{id}/thumbnail: what the page shows before a download."""

from __future__ import annotations

import io

from PIL import Image

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.photos import photo


def test_photos_list_the_order_with_readiness_and_the_credit_cost(simulator: Sim, service: Service) -> None:
    order = simulator.state.seed_order(
        name="3 Bay View",
        images=[
            SeedImage(name="front.jpg", data=photo(1600, 1000, (10, 20, 30))),
            SeedImage(name="pool.jpg", data=photo(1600, 1000, (10, 20, 200)), status="processing"),
        ],
    )
    with service.client() as client:
        free = client.get(f"/v1/orders/{order['order_id']}/photos").json()
        paid = client.get(f"/v1/orders/{order['order_id']}/photos", params={"sets": "full,mls", "preview": "false"})
    assert free["name"] == "3 Bay View" and free["total"] == 2 and free["ready"] == 1
    assert [(p["name"], p["ready"]) for p in free["photos"]] == [("front.jpg", True), ("pool.jpg", False)]
    assert "still being enhanced" in free["photos"][1]["reason"]
    assert free["cost"]["credits"] == 0
    cost = paid.json()["cost"]
    assert cost["credits"] == 2 and cost["full_size_downloads"] == 4 and cost["full_size_sets"] == ["full", "mls"]
    assert simulator.state.stats["credits_spent"] == 0  # asking the cost spends nothing


def test_thumbnails_are_small_free_jpegs_even_before_enhancement(simulator: Sim, service: Service) -> None:
    order = simulator.state.seed_order(
        name="Thumbs",
        images=[
            SeedImage(name="front.jpg", data=photo(1600, 1000, (10, 20, 30))),
            SeedImage(name="pool.jpg", data=photo(1600, 1000, (10, 20, 200)), status="processing"),
        ],
    )
    with service.client() as client:
        listed = client.get(f"/v1/orders/{order['order_id']}/photos").json()
        for item in listed["photos"]:
            response = client.get(f"/v1/{item['thumbnail_url']}")
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(response.content)) as img:
                assert img.format == "JPEG" and img.width == 320
        missing = client.get("/v1/images/00000000-0000-4000-8000-000000000000/thumbnail")
        bad = client.get("/v1/images/..%2f..%2fetc/thumbnail")
    assert missing.status_code == 404 and "detail" in missing.json()
    assert bad.status_code in (404, 422)
    assert simulator.state.stats["credits_spent"] == 0


def test_unknown_order_is_a_404_with_a_sentence(simulator: Sim, service: Service) -> None:
    with service.client() as client:
        response = client.get("/v1/orders/00000000-0000-4000-8000-000000000000/photos")
        invalid = client.get("/v1/orders/nope/photos")
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    assert invalid.status_code == 400
