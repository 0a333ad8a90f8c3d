"""The Autoenhance v3 simulator over real HTTP: contract shapes, lifecycle, downloads, faults, control.

One uvicorn server per module; each test swaps in a fresh SimulatorState (the app reads
`app.state.simulator` on every request), so tests stay independent and fast.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from harness.servers import free_port, serve
from simulator import Fault, SeedImage, SimulatorState, create_app
from simulator.demo import DEMO_ORDER_ID, DEMO_ORDER_NAME, sample_paths, seed_demo

KEY = "sim-test-key"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sim:
    state: SimulatorState
    base: str
    port: int

    def client(self, *, key: str | None = KEY, follow: bool = True, **headers: str) -> httpx.Client:
        if key is not None:
            headers["x-api-key"] = key
        return httpx.Client(base_url=self.base, headers=headers, follow_redirects=follow, timeout=20)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, str, int]]:
    app = create_app(SimulatorState())
    port = free_port()
    with serve(app, port=port) as base:
        yield app, base, port


@pytest.fixture
def make_sim(server: tuple[Any, str, int]) -> Any:
    """Factory: make_sim(**SimulatorState kwargs) installs a fresh state on the running server."""
    app, base, port = server

    def make(**kwargs: Any) -> Sim:
        state = SimulatorState(**kwargs)
        app.state.simulator = state
        return Sim(state, base, port)

    return make


@pytest.fixture
def sim(make_sim: Any) -> Sim:
    return make_sim()  # type: ignore[no-any-return]


@cache
def photo() -> bytes:
    """A dull 1400x900 JPEG: wider than the 1024 px preview cap."""
    img = Image.new("RGB", (1400, 900), (80, 86, 100))
    draw = ImageDraw.Draw(img)
    for x in range(0, 1400, 100):
        draw.rectangle((x, 450, x + 50, 900), fill=(105, 90, 75))
    draw.ellipse((300, 60, 700, 380), fill=(150, 156, 170))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def seed_photo(sim: Sim, **kwargs: Any) -> tuple[str, str]:
    order = sim.state.seed_order(name="Photo", images=[SeedImage(name="kitchen.jpg", data=photo(), **kwargs)])
    return order["order_id"], order["images"][0]["image_id"]


def seed_synthetic(sim: Sim, *sizes: int) -> tuple[str, list[str]]:
    order = sim.state.seed_order(
        name="Synthetic", images=[SeedImage(name=f"{i}.jpg", size=s) for i, s in enumerate(sizes)]
    )
    return order["order_id"], [i["image_id"] for i in order["images"]]


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def api_error(response: httpx.Response, status: int, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "message"} and body["message"] == message
    return body


# ---- lifecycle and JSON fidelity -------------------------------------------------------------


def test_image_lifecycle_waiting_processing_processed(make_sim: Any) -> None:
    sim = make_sim(processing_seconds=0.4)
    with sim.client() as c:
        order = c.post("/v3/orders/", json={"name": "12 Oak Street"}).json()
        assert order["status"] == "waiting" and order["images"] == [] and order["total_images"] == 0
        created = c.post("/v3/images/", json={"image_name": "kitchen.jpg", "order_id": order["order_id"]}).json()
        assert created["status"] == "waiting" and created["enhanced"] is False and created["error"] is False
        assert created["upload_url"].startswith("http") and created["s3PutObjectUrl"].startswith("http")
        before = c.get(f"/v3/orders/{order['order_id']}").json()
        assert before["total_images"] == 1 and before["status"] == "waiting"

        time.sleep(0.01)
        put = httpx.put(created["upload_url"], content=photo(), headers={"Content-Type": "image/jpeg"})
        assert put.status_code == 200 and put.content == b""
        image = c.get(f"/v3/images/{created['image_id']}").json()
        assert image["status"] == "processing"
        during = c.get(f"/v3/orders/{order['order_id']}").json()
        assert during["status"] == "processing" and during["is_processing"] is True
        assert during["last_updated_at"] > before["last_updated_at"]  # the upload changed the order

        time.sleep(0.45)
        after = c.get(f"/v3/orders/{order['order_id']}").json()
        assert after["status"] == "processed" and after["is_processing"] is False
        assert after["images"][0]["status"] == "processed" and after["images"][0]["enhanced"] is True
        assert after["last_updated_at"] > during["last_updated_at"]


def test_json_fields_satisfy_the_strict_sdk_models(sim: Sim) -> None:
    with sim.client() as c:
        # exactly what SDK 1.1.0 sends: explicit nulls for unset nullable fields
        body = {
            "image_name": "a.jpg",
            "enhance": True,
            "lens_correction": True,
            "vertical_correction": True,
            "cloud_type": None,
            "privacy": None,
            "window_pull": None,
            "ai_version": "5.x",
            "enhance_type": "WARM",
            "metadata": {"room": 3},
        }
        image = c.post("/v3/images/", json=body).json()
        assert image["ai_version"] == "5.x" and image["enhance_type"] == "warm"
        plain = c.post("/v3/images/", json={"image_name": "b.jpg"}).json()
        order = c.get(f"/v3/orders/{image['order_id']}").json()
    assert plain["ai_version"] == "4.x" and plain["metadata"] == {}
    assert isinstance(image["date_added"], int) and not isinstance(image["date_added"], bool)
    assert abs(image["date_added"] / 1000 - time.time()) < 60
    assert image["metadata"] == {"room": 3}
    for key in ("downloaded", "enhance", "lens_correction", "vertical_correction", "enhanced", "error"):
        assert isinstance(image[key], bool), key
    assert "status_reason" in image and image["user_id"]
    assert {
        "order_id",
        "name",
        "created_at",
        "last_updated_at",
        "images",
        "is_processing",
        "is_merging",
        "is_deleted",
        "status",
        "total_images",
    } <= set(order)
    assert datetime.fromisoformat(order["created_at"]).tzinfo is not None
    assert order["is_processing"] is False and order["is_deleted"] is False and order["is_merging"] is False


def test_seeded_statuses_are_shown_as_given(sim: Sim) -> None:
    order = sim.state.seed_order(
        images=[
            SeedImage(name="w.jpg", status="waiting"),
            SeedImage(name="p.jpg", size=10, status="processing"),
            SeedImage(name="e.jpg", size=10, status="error", status_reason="Daily limit reached"),
        ]
    )
    statuses = [(i["status"], i["status_reason"], i["error"]) for i in order["images"]]
    assert statuses == [("waiting", None, False), ("processing", None, False), ("error", "Daily limit reached", True)]
    assert order["status"] == "processing" and order["is_processing"] is True


def test_rename_reprocess_report_and_deletes(make_sim: Any) -> None:
    sim = make_sim(processing_seconds=0.2)
    order_id, image_id = seed_photo(sim)
    with sim.client() as c:
        first = c.get(f"/v3/orders/{order_id}").json()
        time.sleep(0.01)
        renamed = c.patch(f"/v3/orders/{order_id}/", json={"name": "New name"}).json()
        assert renamed["name"] == "New name" and renamed["last_updated_at"] > first["last_updated_at"]
        reprocessed = c.post(f"/v3/images/{image_id}/process", json={"enhance_type": "neutral"}).json()
        assert reprocessed["status"] == "processing" and reprocessed["enhance_type"] == "neutral"
        legacy = c.patch(f"/v3/images/{image_id}/process", json={})
        assert legacy.status_code == 200
        report = c.post(f"/v3/images/{image_id}/report", json={"categories": ["COLOUR"], "score": 3}).json()
        assert report["image_id"] == image_id and report["categories"] == ["COLOUR"]
        assert c.delete(f"/v3/images/{image_id}").status_code == 204
        api_error(c.get(f"/v3/images/{image_id}"), 404, "Not Found")
        assert c.get(f"/v3/orders/{order_id}").json()["total_images"] == 0
        assert c.delete(f"/v3/orders/{order_id}").status_code == 204
        api_error(c.get(f"/v3/orders/{order_id}"), 404, "Not Found")
        api_error(c.delete(f"/v3/orders/{order_id}"), 404, "Not Found")


def test_brackets_and_hdr_processing(sim: Sim) -> None:
    with sim.client() as c:
        order_id = c.post("/v3/orders/", json={}).json()["order_id"]
        brackets = [c.post("/v3/brackets/", json={"order_id": order_id, "name": f"b{i}.jpg"}).json() for i in range(3)]
        assert all(b["is_uploaded"] is False and b["upload_url"] for b in brackets)
        for bracket in brackets:
            assert httpx.put(bracket["upload_url"], content=photo()).status_code == 200
        listed = c.get(f"/v3/orders/{order_id}/brackets").json()["brackets"]
        assert [b["is_uploaded"] for b in listed] == [True, True, True]
        order = c.post(f"/v3/orders/{order_id}/process", json={"number_of_brackets_per_image": 3}).json()
        assert order["total_images"] == 1


# ---- auth, errors, validation, paths -----------------------------------------------------------


def test_missing_or_wrong_api_key_is_401_in_the_apiflask_shape(make_sim: Any) -> None:
    sim = make_sim(api_keys={"good"})
    order_id, image_id = seed_photo(sim)
    with sim.client(key=None) as anonymous, sim.client(key="bad") as bad, sim.client(key="good") as good:
        for client in (anonymous, bad):
            body = api_error(client.post("/v3/images/", json={"image_name": "a.jpg"}), 401, "Unauthorized")
            assert body["detail"] == {}
            api_error(client.get(f"/v3/images/{image_id}/enhanced"), 401, "Unauthorized")
            api_error(client.get("/v3/orders/"), 401, "Unauthorized")
        # the spec's open endpoints
        assert anonymous.get(f"/v3/orders/{order_id}").status_code == 200
        assert anonymous.get(f"/v3/images/{image_id}").status_code == 200
        assert good.get(f"/v3/images/{image_id}/enhanced").status_code == 200
    assert sim.state.stats["enhanced"] == 3  # rejected requests are still counted


def test_any_non_empty_key_when_no_key_set_is_configured(sim: Sim) -> None:
    with sim.client(key="whatever") as c, sim.client(key="") as empty:
        assert c.get("/v3/orders/").status_code == 200
        api_error(empty.get("/v3/orders/"), 401, "Unauthorized")


def test_not_found_and_method_shapes(sim: Sim) -> None:
    with sim.client() as c:
        assert api_error(c.get("/v3/images/nope"), 404, "Not Found")["detail"] == {}
        api_error(c.get("/v3/orders/nope"), 404, "Not Found")
        api_error(c.get("/v3/images/nope/enhanced"), 404, "Not Found")
        api_error(c.get("/v3/no-such-route"), 404, "Not Found")
        api_error(c.put("/v3/images/"), 405, "Method Not Allowed")


def test_validation_errors_name_location_and_field(sim: Sim) -> None:
    _, image_id = seed_photo(sim)
    with sim.client() as c:
        body = api_error(c.get(f"/v3/images/{image_id}/enhanced", params={"quality": 0}), 422, "Validation error")
        assert body["detail"] == {"query": {"quality": ["Must be between 1 and 90."]}}
        body = api_error(c.get(f"/v3/images/{image_id}/enhanced", params={"format": "gif"}), 422, "Validation error")
        assert list(body["detail"]["query"]) == ["format"]
        body = api_error(c.post("/v3/images/", json={"order_id": "x"}), 422, "Validation error")
        assert body["detail"] == {"json": {"image_name": ["Missing data for required field."]}}
        body = api_error(
            c.post("/v3/images/", json={"image_name": "a", "ai_version": "latest"}), 422, "Validation error"
        )
        assert "ai_version" in body["detail"]["json"]
        body = api_error(c.get("/v3/orders/", params={"per_page": 16}), 422, "Validation error")
        assert body["detail"]["query"]["per_page"] == ["Must be between 1 and 15."]
        body = api_error(c.post("/v3/orders/", content=b"not json"), 422, "Validation error")
        assert "json" in body["detail"]


def test_double_slash_and_trailing_slash_variants(sim: Sim) -> None:
    order_id, image_id = seed_photo(sim)
    with sim.client() as c:
        for path in (
            f"{sim.base}//v3/orders/{order_id}",
            f"{sim.base}/v3/orders/{order_id}/",
            f"{sim.base}//v3//orders/{order_id}//",
        ):
            assert c.get(path).json()["order_id"] == order_id, path
        assert c.get(f"{sim.base}//v3/images/{image_id}/enhanced/").status_code == 200
        assert c.post(f"{sim.base}/v3/images", json={"image_name": "a.jpg"}).status_code == 200


def test_orders_are_paged_newest_first_with_opaque_offsets(sim: Sim) -> None:
    ids = [sim.state.seed_order(name=f"order {i}")["order_id"] for i in range(12)]
    with sim.client() as c:
        first = c.get("/v3/orders/").json()
        assert first["pagination"]["per_page"] == 5 and len(first["orders"]) == 5
        assert first["orders"][0]["order_id"] == ids[-1]
        seen, offset, pages = [], None, 0
        while True:
            params: dict[str, Any] = {"per_page": 5}
            if offset:
                params["offset"] = offset
            page = c.get("/v3/orders/", params=params).json()
            seen += [o["order_id"] for o in page["orders"]]
            pages += 1
            offset = page["pagination"]["next_offset"]
            if offset is None:
                break
            assert isinstance(offset, str)
        assert pages == 3 and seen == list(reversed(ids))
        body = api_error(c.get("/v3/orders/", params={"offset": "garbage!"}), 422, "Validation error")
        assert body["detail"] == {"query": {"offset": ["Invalid offset."]}}


def test_order_create_conflict_and_client_chosen_ids(sim: Sim) -> None:
    with sim.client() as c:
        created = c.post("/v3/orders/", json={"order_id": "my-order", "name": "Mine"}).json()
        assert created["order_id"] == "my-order" and created["name"] == "Mine"
        api_error(c.post("/v3/orders/", json={"order_id": "my-order"}), 409, "Order already exists")
        image = c.post("/v3/images/", json={"image_name": "a.jpg", "order_id": "other", "image_id": "img-1"}).json()
        assert image["image_id"] == "img-1" and c.get("/v3/orders/other").json()["total_images"] == 1


# ---- uploads -----------------------------------------------------------------------------------


def test_s3_put_url_requires_the_declared_content_type(sim: Sim) -> None:
    with sim.client() as c:
        image = c.post("/v3/images/", json={"image_name": "a.png", "content_type": "image/png"}).json()
    wrong = httpx.put(image["s3PutObjectUrl"], content=b"x", headers={"Content-Type": "image/jpeg"})
    assert wrong.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in wrong.content
    assert wrong.headers["content-type"].startswith("application/xml")
    tampered = httpx.put(image["upload_url"].replace("token=", "token=x"), content=b"x")
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    assert sim.state.images[image["image_id"]].status == "waiting"
    ok = httpx.put(image["s3PutObjectUrl"], content=photo(), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.content == b""
    assert sim.state.images[image["image_id"]].data == photo()
    # the newer upload_url takes any Content-Type
    assert httpx.put(
        image["upload_url"], content=photo(), headers={"Content-Type": "application/octet-stream"}
    ).is_success
    assert sim.state.stats["upload"] == 4


def test_undecodable_upload_ends_in_error_with_a_reason(sim: Sim) -> None:
    with sim.client() as c:
        image = c.post("/v3/images/", json={"image_name": "a.jpg"}).json()
        httpx.put(image["upload_url"], content=b"definitely not a photo")
        shown = c.get(f"/v3/images/{image['image_id']}").json()
    assert shown["status"] == "error" and shown["error"] is True and shown["status_reason"]


# ---- downloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pil_format", "content_type"),
    [("png", "PNG", "image/png"), ("jpeg", "JPEG", "image/jpeg"), ("webp", "WEBP", "image/webp")],
)
def test_enhanced_redirects_to_an_asset_in_the_requested_format(
    sim: Sim, fmt: str, pil_format: str, content_type: str
) -> None:
    _, image_id = seed_photo(sim)
    with sim.client(follow=False) as c:
        redirect = c.get(f"/v3/images/{image_id}/enhanced", params={"format": fmt})
        assert redirect.status_code == 302
        location = redirect.headers["location"]
        assert location.startswith(f"{sim.base}/assets/")
        asset = c.get(location)
    assert asset.status_code == 200 and asset.headers["content-type"] == content_type
    assert int(asset.headers["content-length"]) == len(asset.content)
    img = decode(asset.content)
    assert img.format == pil_format
    assert img.size == (1024, 658)  # preview is the default: capped at 1024 px wide


def test_preview_full_size_max_width_scale_and_quality(sim: Sim) -> None:
    _, image_id = seed_photo(sim)
    url = f"/v3/images/{image_id}/enhanced"
    with sim.client(**{"x-dev-mode": "false"}) as c:
        full = decode(c.get(url, params={"preview": "false", "format": "png"}).content)
        narrow = decode(c.get(url, params={"preview": "false", "max_width": 500}).content)
        half = decode(c.get(url, params={"preview": "false", "scale": 0.5}).content)
        low = c.get(url, params={"preview": "false", "quality": 5}).content
        high = c.get(url, params={"preview": "false", "quality": 90}).content
        legacy = decode(c.get(f"/v3/images/{image_id}/preview", headers={"x-api-key": ""}).content)
    assert full.size == (1400, 900) and narrow.size == (500, 321) and half.size == (700, 450)
    assert len(low) * 2 < len(high)
    assert legacy.size[0] <= 1024


def test_enhancement_visibly_changes_the_photo(sim: Sim) -> None:
    _, image_id = seed_photo(sim)
    with sim.client() as c:
        enhanced = decode(
            c.get(f"/v3/images/{image_id}/enhanced", params={"preview": "false", "format": "png"}).content
        )
    original = decode(photo()).convert("RGB")
    before, after = ImageStat.Stat(original), ImageStat.Stat(enhanced.convert("RGB"))
    assert sum(after.mean) > sum(before.mean) + 15  # brighter
    assert after.mean[0] - after.mean[2] > before.mean[0] - before.mean[2]  # warmer
    assert max(b for _, b in ImageChops.difference(original, enhanced.convert("RGB")).getextrema()) > 40


def test_dev_mode_watermarks_and_spends_no_credit(sim: Sim) -> None:
    _, image_id = seed_photo(sim)
    url = f"/v3/images/{image_id}/enhanced"
    with sim.client() as c, sim.client(**{"x-dev-mode": "true"}) as dev:
        clean = decode(c.get(url, params={"format": "png"}).content).convert("RGB")
        marked = decode(dev.get(url, params={"format": "png", "preview": "false", "max_width": 1024}).content)
    marked = marked.convert("RGB")
    assert clean.size == marked.size
    width, height = clean.size
    band = (0, height // 2 - 20, width, height // 2 + 20)
    diff = ImageStat.Stat(ImageChops.difference(clean.crop(band), marked.crop(band)))
    assert sum(diff.mean) > 30  # the translucent band and text are in the middle
    corner = ImageStat.Stat(ImageChops.difference(clean.crop((0, 0, 200, 100)), marked.crop((0, 0, 200, 100))))
    assert sum(corner.mean) < 3  # and only there
    assert sim.state.stats["credits_spent"] == 0


def test_full_size_downloads_spend_one_credit_per_image(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 100, 100)
    with sim.client() as c:
        assert c.get(f"/v3/images/{ids[0]}/enhanced").status_code == 200  # preview: free
        assert sim.state.stats["credits_spent"] == 0
        c.get(f"/v3/images/{ids[0]}/enhanced", params={"preview": "false"})
        c.get(f"/v3/images/{ids[0]}/enhanced", params={"preview": "false"})  # already paid for
        assert sim.state.stats["credits_spent"] == 1
        assert c.get(f"/v3/images/{ids[0]}").json()["downloaded"] is True
        c.get(f"/v3/images/{ids[1]}/enhanced", params={"preview": "false"})
    assert sim.state.stats["credits_spent"] == 2


def test_original_serves_the_uploaded_bytes_or_a_rendition(sim: Sim) -> None:
    _, image_id = seed_photo(sim)
    with sim.client(key=None) as c:
        exact = c.get(f"/v3/images/{image_id}/original")
        png = decode(c.get(f"/v3/images/{image_id}/original", params={"format": "png"}).content)
    assert exact.content == photo() and exact.headers["content-type"] == "image/jpeg"
    assert png.format == "PNG" and png.size == (1400, 900)


def test_unprocessed_images_answer_404_not_processed_yet(sim: Sim) -> None:
    order = sim.state.seed_order(
        images=[
            SeedImage(name="p.jpg", size=10, status="processing"),
            SeedImage(name="w.jpg", status="waiting"),
            SeedImage(name="e.jpg", size=10, status="error"),
        ]
    )
    with sim.client() as c:
        for image, status in zip(order["images"], ("processing", "waiting", "error"), strict=True):
            body = api_error(c.get(f"/v3/images/{image['image_id']}/enhanced"), 404, "Image not processed yet")
            assert body["detail"] == {"status": status}


def test_synthetic_images_serve_exact_deterministic_bytes(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 2_000_000, 2_000_000, 10, 0)
    with sim.client() as c:
        bodies = [c.get(f"/v3/images/{i}/enhanced", params={"format": "png"}) for i in ids]
    for image_id, response, size in zip(ids, bodies, (2_000_000, 2_000_000, 10, 0), strict=True):
        assert response.content == sim.state.synthetic_bytes(image_id) and len(response.content) == size
        assert int(response.headers["content-length"]) == size
    assert bodies[0].headers["content-type"] == "image/png"
    assert bodies[0].content != bodies[1].content
    assert bodies[0].content[100:200] != bodies[1].content[100:200]
    again = SimulatorState()
    again.seed_order(images=[SeedImage(name="x.jpg", size=2_000_000, image_id=ids[0])])
    assert again.synthetic_bytes(ids[0]) == bodies[0].content
    with pytest.raises(KeyError):
        sim.state.synthetic_bytes("nope")


def test_asset_tokens_are_random_and_expire(make_sim: Any) -> None:
    sim = make_sim()
    sim.state.asset_ttl_seconds = 0.2
    _, ids = seed_synthetic(sim, 100)
    with sim.client(follow=False) as c:
        first = c.get(f"/v3/images/{ids[0]}/enhanced").headers["location"]
        second = c.get(f"/v3/images/{ids[0]}/enhanced").headers["location"]
        assert first != second
        time.sleep(0.3)
        expired = c.get(first)
        unknown = c.get(f"{sim.base}/assets/made-up")
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    assert unknown.status_code == 403 and b"<Code>AccessDenied</Code>" in unknown.content


def test_asset_base_url_moves_assets_to_another_origin(server: tuple[Any, str, int], make_sim: Any) -> None:
    _, _, port = server
    sim = make_sim(asset_base_url=f"http://localhost:{port}")
    _, ids = seed_synthetic(sim, 1000)
    with sim.client(follow=False) as c:
        location = c.get(f"/v3/images/{ids[0]}/enhanced").headers["location"]
        assert location.startswith(f"http://localhost:{port}/assets/")
        careful = httpx.get(location)  # a client that drops x-api-key on the way to another host
        assert careful.content == sim.state.synthetic_bytes(ids[0])
        assert sim.state.stats["asset_requests_with_api_key"] == 0
        c.get(c.get(f"/v3/images/{ids[0]}/enhanced").headers["location"])  # one that leaks it
    assert sim.state.stats["asset_requests_with_api_key"] == 1
    assert sim.state.stats["asset"] == 2


def test_request_counters_and_reset(sim: Sim) -> None:
    order_id, ids = seed_synthetic(sim, 10)
    with sim.client() as c:
        c.get(f"/v3/orders/{order_id}")
        c.get(f"/v3/orders/{order_id}")
        c.get(f"/v3/images/{ids[0]}/enhanced")
        c.get(f"/v3/images/{ids[0]}/original")
    stats = sim.state.stats
    assert (stats["order_get"], stats["enhanced"], stats["original"], stats["asset"]) == (2, 1, 1, 2)
    assert stats["asset_bytes"] == 20 and stats["concurrent_downloads"] == 0 and stats["peak_concurrent_downloads"] == 1
    sim.state.reset_stats()
    assert sim.state.stats["order_get"] == 0 and sim.state.stats["asset"] == 0


async def test_peak_concurrency_and_the_download_limit(make_sim: Any) -> None:
    sim = make_sim(download_latency=0.5, max_concurrent_downloads=3)
    _, ids = seed_synthetic(sim, *([1000] * 4))
    async with httpx.AsyncClient(base_url=sim.base, headers={"x-api-key": KEY}, follow_redirects=True) as c:
        held = [asyncio.create_task(c.get(f"/v3/images/{i}/enhanced")) for i in ids[:3]]
        await asyncio.sleep(0.25)
        refused = await c.get(f"/v3/images/{ids[3]}/enhanced")
        done = await asyncio.gather(*held)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json() == {"detail": {}, "message": "Too Many Requests"}
    assert [r.status_code for r in done] == [200, 200, 200]
    assert sim.state.stats["peak_concurrent_downloads"] == 3 and sim.state.stats["rate_limited"] == 1
    assert sim.state.stats["concurrent_downloads"] == 0


# ---- faults ------------------------------------------------------------------------------------


def test_fault_latency_delays_enhanced_only_as_often_as_asked(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="latency", seconds=0.4, times=1))
    with sim.client() as c:
        start = time.monotonic()
        c.get(f"/v3/images/{ids[0]}/enhanced")
        slow = time.monotonic() - start
        start = time.monotonic()
        c.get(f"/v3/images/{ids[0]}/enhanced")
        fast = time.monotonic() - start
    assert slow >= 0.4 and fast < 0.3


def test_fault_status_answers_with_the_status_then_recovers(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="status", status=503, times=2, retry_after=3))
    with sim.client() as c:
        first = c.get(f"/v3/images/{ids[0]}/enhanced")
        api_error(first, 503, "Service Unavailable")
        assert first.headers["retry-after"] == "3"
        api_error(c.get(f"/v3/images/{ids[0]}/enhanced"), 503, "Service Unavailable")
        assert c.get(f"/v3/images/{ids[0]}/enhanced").status_code == 200


@pytest.mark.parametrize(
    ("status", "message"),
    [(500, "Internal Server Error"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not Found")],
)
def test_fault_status_codes(sim: Sim, status: int, message: str) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="status", status=status))
    with sim.client() as c:
        for _ in range(2):  # times=None: always
            api_error(c.get(f"/v3/images/{ids[0]}/enhanced"), status, message)


def test_fault_rate_limit_with_and_without_retry_after(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="rate_limit", retry_after=2, times=1))
    sim.state.add_fault(Fault(kind="rate_limit", times=1))
    with sim.client() as c:
        with_header = c.get(f"/v3/images/{ids[0]}/enhanced")
        without = c.get(f"/v3/images/{ids[0]}/enhanced")
        ok = c.get(f"/v3/images/{ids[0]}/enhanced")
    api_error(with_header, 429, "Too Many Requests")
    assert with_header.headers["retry-after"] == "2"
    api_error(without, 429, "Too Many Requests")
    assert "retry-after" not in without.headers
    assert ok.status_code == 200 and sim.state.stats["rate_limited"] == 2


def test_fault_not_ready_and_scoping_by_image_and_order(sim: Sim) -> None:
    order_a, ids_a = seed_synthetic(sim, 10, 10)
    _, ids_b = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="not_ready", image_id=ids_a[0], times=1))
    sim.state.add_fault(Fault(kind="status", order_id=order_a, status=500, times=1))
    with sim.client() as c:
        assert c.get(f"/v3/images/{ids_b[0]}/enhanced").status_code == 200  # other order: untouched
        api_error(c.get(f"/v3/images/{ids_a[1]}/enhanced"), 500, "Internal Server Error")
        body = api_error(c.get(f"/v3/images/{ids_a[0]}/enhanced"), 404, "Image not processed yet")
        assert body["detail"] == {"status": "processing"}
        assert c.get(f"/v3/images/{ids_a[0]}").json()["status"] == "processed"  # JSON unaffected
        assert c.get(f"/v3/images/{ids_a[0]}/enhanced").status_code == 200


def test_fault_error_status_shows_error_until_cleared(sim: Sim) -> None:
    order_id, ids = seed_synthetic(sim, 10, 10)
    sim.state.add_fault(Fault(kind="error_status", image_id=ids[0], status_reason="Too dark to enhance"))
    with sim.client() as c:
        order = c.get(f"/v3/orders/{order_id}").json()
        bad, good = order["images"]
        assert (bad["status"], bad["status_reason"], bad["error"]) == ("error", "Too dark to enhance", True)
        assert good["status"] == "processed"
        api_error(c.get(f"/v3/images/{ids[0]}/enhanced"), 404, "Image not processed yet")
        time.sleep(0.01)
        sim.state.clear_faults()
        healed = c.get(f"/v3/orders/{order_id}").json()
    assert healed["images"][0]["status"] == "processed"
    assert healed["last_updated_at"] > order["last_updated_at"]


def test_fault_error_status_times_bounds_the_images_claimed(sim: Sim) -> None:
    order_id, _ = seed_synthetic(sim, 10, 10, 10)
    sim.state.add_fault(Fault(kind="error_status", times=2))
    with sim.client() as c:
        first = [i["status"] for i in c.get(f"/v3/orders/{order_id}").json()["images"]]
        again = [i["status"] for i in c.get(f"/v3/orders/{order_id}").json()["images"]]
    assert first == again == ["error", "error", "processed"]


def test_fault_stall_pauses_the_asset_mid_stream(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 300_000)
    sim.state.add_fault(Fault(kind="stall", after_bytes=1000, seconds=0.6))
    received: list[tuple[float, int]] = []
    with sim.client() as c, c.stream("GET", f"/v3/images/{ids[0]}/enhanced") as response:
        start = time.monotonic()
        for chunk in response.iter_raw():
            received.append((time.monotonic() - start, len(chunk)))
    body_before = sum(n for t, n in received if t < 0.3)
    assert body_before == 1000
    assert sum(n for _, n in received) == 300_000 and received[-1][0] >= 0.55


def test_fault_truncate_cuts_the_body_short_of_content_length(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 100_000)
    sim.state.add_fault(Fault(kind="truncate", after_bytes=5000, times=1))
    got = bytearray()
    with sim.client() as c:
        with pytest.raises(httpx.RemoteProtocolError), c.stream("GET", f"/v3/images/{ids[0]}/enhanced") as response:
            assert response.headers["content-length"] == "100000"
            for chunk in response.iter_raw():
                got += chunk
        assert bytes(got) == sim.state.synthetic_bytes(ids[0])[:5000]
        assert c.get(f"/v3/images/{ids[0]}/enhanced").content == sim.state.synthetic_bytes(ids[0])


def test_fault_expired_asset_and_asset_404_answer_like_s3(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="expired_asset", times=1))
    sim.state.add_fault(Fault(kind="asset_404", times=1))
    with sim.client() as c:
        expired = c.get(f"/v3/images/{ids[0]}/enhanced")
        missing = c.get(f"/v3/images/{ids[0]}/enhanced")
        fine = c.get(f"/v3/images/{ids[0]}/enhanced")
    assert expired.status_code == 403 and expired.headers["content-type"].startswith("application/xml")
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.content
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content
    assert fine.status_code == 200


def test_fault_redirect_loop_never_reaches_an_asset(sim: Sim) -> None:
    _, ids = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="redirect_loop", image_id=ids[0]))
    with sim.client(follow=False) as manual:
        hop = manual.get(f"/v3/images/{ids[0]}/enhanced", params={"format": "png"})
        assert hop.status_code == 302 and "/assets/loop/" in hop.headers["location"]
        back = manual.get(hop.headers["location"])
        assert back.status_code == 302 and back.headers["location"].endswith(f"/v3/images/{ids[0]}/enhanced?format=png")
    with sim.client() as c, pytest.raises(httpx.TooManyRedirects):
        c.get(f"/v3/images/{ids[0]}/enhanced")
    assert sim.state.stats["asset"] == 0


def test_fault_order_status_not_json_and_latency(sim: Sim) -> None:
    order_id, _ = seed_synthetic(sim, 10)
    other_id, _ = seed_synthetic(sim, 10)
    sim.state.add_fault(Fault(kind="order_status", order_id=order_id, status=503, times=1))
    sim.state.add_fault(Fault(kind="order_not_json", order_id=order_id, times=1))
    sim.state.add_fault(Fault(kind="order_latency", order_id=order_id, seconds=0.4, times=1))
    with sim.client() as c:
        assert c.get(f"/v3/orders/{other_id}").status_code == 200  # scoped to order_id
        start = time.monotonic()
        api_error(c.get(f"/v3/orders/{order_id}"), 503, "Service Unavailable")
        assert time.monotonic() - start >= 0.4
        garbled = c.get(f"/v3/orders/{order_id}")
        assert garbled.status_code == 200 and garbled.headers["content-type"].startswith("text/html")
        with pytest.raises(json.JSONDecodeError):
            json.loads(garbled.content)
        assert c.get(f"/v3/orders/{order_id}").json()["order_id"] == order_id


def test_unknown_fault_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="gremlins")  # type: ignore[arg-type]


# ---- control API, demo, CLI --------------------------------------------------------------------


def test_control_api_seeds_injects_reads_and_configures(sim: Sim) -> None:
    with httpx.Client(base_url=sim.base) as c:
        seeded = c.post(
            "/_simulator/orders",
            json={
                "order_id": "bench-1",
                "name": "Bench",
                "images": [
                    {"name": "a.jpg", "size": 2048},
                    {"name": "b.jpg", "size": 10, "status": "error", "status_reason": "nope"},
                ],
            },
        )
        assert seeded.status_code == 201
        order = seeded.json()
        assert order["order_id"] == "bench-1" and [i["status"] for i in order["images"]] == ["processed", "error"]
        samples = c.post("/_simulator/orders", json={"samples": True}).json()
        assert samples["total_images"] == len(sample_paths()) >= 3

        fault = c.post("/_simulator/faults", json={"kind": "status", "status": 500, "times": 1})
        assert fault.status_code == 201 and fault.json()["kind"] == "status"
        assert c.post("/_simulator/faults", json={"kind": "nope"}).status_code == 422
        assert c.post("/_simulator/faults", json={"kind": "status", "colour": 1}).status_code == 422
        image_id = order["images"][0]["image_id"]
        assert c.get(f"/v3/images/{image_id}/enhanced", headers={"x-api-key": KEY}).status_code == 500
        assert len(c.get("/_simulator/faults").json()) == 1
        assert c.delete("/_simulator/faults").status_code == 204
        assert sim.state.faults.snapshot() == []

        stats = c.get("/_simulator/stats").json()
        assert stats["enhanced"] == 1 and "peak_concurrent_downloads" in stats
        assert c.post("/_simulator/stats/reset").json()["enhanced"] == 0

        config = c.put(
            "/_simulator/config",
            json={"download_latency": 0.05, "max_concurrent_downloads": 7, "processing_seconds": 2},
        )
        assert config.json()["max_concurrent_downloads"] == 7
        state = sim.state
        assert (state.download_latency, state.max_concurrent_downloads, state.processing_seconds) == (0.05, 7, 2)
        assert c.put("/_simulator/config", json={"max_concurrent_downloads": 0}).status_code == 422
        unlimited = c.put("/_simulator/config", json={"max_concurrent_downloads": None}).json()
        assert unlimited["max_concurrent_downloads"] is None and state.max_concurrent_downloads is None
    assert len(sim.state.synthetic_bytes(image_id)) == 2048


def test_demo_order_uses_the_bundled_samples(sim: Sim) -> None:
    from app.config import DEMO_ORDER_ID as APP_DEMO_ORDER_ID

    assert DEMO_ORDER_ID == APP_DEMO_ORDER_ID
    order = seed_demo(sim.state)
    assert seed_demo(sim.state) == order | {"last_updated_at": order["last_updated_at"]}  # idempotent
    assert order["order_id"] == DEMO_ORDER_ID and order["name"] == DEMO_ORDER_NAME
    assert order["total_images"] == 3 and order["status"] == "processed"
    with sim.client() as c:
        for image in order["images"]:
            response = c.get(f"/v3/images/{image['image_id']}/enhanced", params={"preview": "false"})
            assert decode(response.content).size[0] >= 1600


def test_sample_images_are_big_real_estate_jpegs() -> None:
    paths = sample_paths()
    assert {p.name for p in paths} >= {"living-room.jpg", "kitchen.jpg", "exterior.jpg"}
    for path in paths:
        img = decode(path.read_bytes())
        assert img.format == "JPEG" and img.size[0] >= 1600, path
        assert path.stat().st_size < 600 * 1024, path
    assert (ROOT / "simulator" / "sample_images" / "render_samples.py").is_file()


def test_cli_serves_the_demo_order() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port), "--demo", "--latency", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v3/orders/{DEMO_ORDER_ID}", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                assert time.monotonic() < deadline, "simulator CLI did not start"
                time.sleep(0.1)
        assert response.json()["name"] == DEMO_ORDER_NAME and response.json()["total_images"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
