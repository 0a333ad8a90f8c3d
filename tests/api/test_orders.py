"""Creating orders (credit-spending, admin only): sample photos and uploads, sniffed and limited."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip

SAMPLES = sorted(Path("simulator/sample_images").glob("*.jpg"))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def wait_processed(sim: Sim, order_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = sim.state.order_json(sim.state.get_order(order_id))
        if order["images"] and all(img["status"] == "processed" for img in order["images"]):
            return
        time.sleep(0.05)
    raise AssertionError("order did not finish processing")


def test_sample_order_is_created_uploaded_and_downloadable(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="adm1n")
    with service.client() as client:
        response = client.post("/api/create-sample-order", headers={"X-Admin-Token": "adm1n"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["images"] == len(SAMPLES) >= 3
        wait_processed(simulator, body["order_id"])
        archive = client.get(f"/orders/{body['order_id']}/images")
    assert archive.status_code == 200
    members = check_zip(archive.content)
    assert sorted(m for m in members if m.endswith(".jpg")) == sorted(p.name for p in SAMPLES)
    assert simulator.state.stats["upload"] == len(SAMPLES)


def test_uploaded_photos_create_an_order(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="adm1n")
    files = [("files", ("front.png", png_bytes(), "image/png")), ("files", ("hall.jpg", SAMPLES[0].read_bytes(), "image/jpeg"))]
    with service.client() as client:
        response = client.post("/api/create-order", files=files, params={"name": "My listing"}, headers={"X-Admin-Token": "adm1n"})
    assert response.status_code == 200, response.text
    order = simulator.state.order_json(simulator.state.get_order(response.json()["order_id"]))
    assert order["name"] == "My listing"
    assert sorted(img["image_name"] for img in order["images"]) == ["front.png", "hall.jpg"]


def test_admin_token_is_required_when_set(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="adm1n")
    with service.client() as client:
        assert client.post("/api/create-sample-order").status_code == 401
        assert client.post("/api/create-sample-order", headers={"X-Admin-Token": "nope"}).status_code == 401
    assert simulator.state.stats["upload"] == 0


def test_live_mode_without_admin_token_refuses(service: Service, simulator: Sim) -> None:
    with service.client() as client:
        response = client.post("/api/create-sample-order")
    assert response.status_code == 403 and "ADMIN_TOKEN" in response.json()["detail"]
    assert simulator.state.stats["upload"] == 0


def test_upload_type_is_sniffed_not_trusted(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="a")
    files = [("files", ("evil.jpg", b"<script>alert(1)</script>", "image/jpeg"))]
    with service.client() as client:
        response = client.post("/api/create-order", files=files, headers={"X-Admin-Token": "a"})
    assert response.status_code == 422 and "evil.jpg" in response.json()["detail"]
    assert not simulator.state.orders  # nothing was created upstream


def test_upload_limits_on_count_and_size(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="a", max_upload_files=2, max_upload_bytes=2048)
    small = png_bytes()
    with service.client(headers={"X-Admin-Token": "a"}) as client:
        too_many = client.post("/api/create-order", files=[("files", (f"{i}.png", small, "image/png")) for i in range(3)])
        assert too_many.status_code == 422 and "MAX_UPLOAD_FILES" in too_many.json()["detail"]
        too_big = client.post("/api/create-order", files=[("files", ("big.jpg", SAMPLES[0].read_bytes(), "image/jpeg"))])
        assert too_big.status_code == 413 and "MAX_UPLOAD_BYTES" in too_big.json()["detail"]
        none = client.post("/api/create-order", files=[])
        assert none.status_code == 422
    assert not simulator.state.orders


def test_upstream_failure_during_creation_is_502(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token="a", autoenhance_api_key="not-accepted-by-the-simulator")
    with service.client() as client:
        response = client.post("/api/create-sample-order", headers={"X-Admin-Token": "a"})
    assert response.status_code == 502
    assert "API key" in response.json()["detail"]


@pytest.mark.parametrize("damage", ["garbage after the header", "cut in half"])
def test_an_image_that_only_starts_right_is_refused_before_any_credit(
    simulator: Sim, start_service: Callable[..., Service], damage: str
) -> None:
    photo = SAMPLES[0].read_bytes()
    scan = photo.index(b"\xff\xda")  # the first scan: everything before it is a valid JPEG header
    data = photo[: scan + 600] + bytes(range(256)) * 200 if damage.startswith("garbage") else photo[: len(photo) // 2]
    service = start_service(admin_token="a")
    with service.client(headers={"X-Admin-Token": "a"}) as client:
        response = client.post("/v1/api/create-order", files=[("files", ("fake.jpg", data, "image/jpeg"))])
        corrupt_png = png_bytes()[:-30] + b"\x00" * 30
        png = client.post("/v1/api/create-order", files=[("files", ("fake.png", corrupt_png, "image/png"))])
    assert response.status_code == 422 and "fake.jpg" in response.json()["detail"], response.text
    assert png.status_code == 422 and "fake.png" in png.json()["detail"], png.text
    assert not simulator.state.orders  # nothing created, nothing uploaded, no credit spent
