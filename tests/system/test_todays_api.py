"""Today's Autoenhance API, end to end: the service against the simulator pinned to each modelled version.

An order is created from uploads (the upload URL's name changes with the version), arranged by the
photographer (custom order), downloaded with numbered names in that order, and found by name. Every
call to the API carries the pinned `x-api-version`; uploads and assets carry none.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from simulator.versions import MODELLED_VERSIONS
from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip

ADMIN = "adm1n"


def photo(colour: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buffer, fmt)
    return buffer.getvalue()


UPLOADS = [
    ("files", ("kitchen.png", photo((200, 120, 40), "PNG"), "image/png")),
    ("files", ("bath.jpg", photo((40, 120, 200)), "image/jpeg")),
    ("files", ("front.jpg", photo((90, 160, 90)), "image/jpeg")),
]


def wait_processed(sim: Sim, order_id: str, count: int, timeout: float = 20) -> dict[str, str]:
    """Image name -> id once `count` images are processed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = sim.state.order_json(sim.state.get_order(order_id))
        if len(order["images"]) == count and all(img["status"] == "processed" for img in order["images"]):
            return {img["image_name"]: img["image_id"] for img in order["images"]}
        time.sleep(0.05)
    raise AssertionError("order did not finish processing")


def numbered(client: httpx.Client, order_id: str, **params: str) -> tuple[list[str], dict[str, object]]:
    """The ZIP's photo names (in the manifest's order) and its manifest."""
    response = client.get(f"/v1/orders/{order_id}/images", params={"names": "sequence", **params})
    assert response.status_code == 200, response.text
    members = check_zip(response.content)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(response.content)).read("_manifest.json"))
    names = [str(f["name"]) for f in manifest["files"]]
    assert sorted(names) == sorted(m for m in members if not m.startswith("_"))
    return names, manifest


def create_arranged_order(sim: Sim, client: httpx.Client) -> tuple[str, dict[str, str]]:
    created = client.post(
        "/v1/api/create-order", files=UPLOADS, params={"name": "12 Oak Street"}, headers={"X-Admin-Token": ADMIN}
    )
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    ids = wait_processed(sim, order_id, 3)
    sim.state.arrange(order_id, "custom", [ids["front.jpg"], ids["kitchen.png"], ids["bath.jpg"]])
    return order_id, ids


@pytest.mark.parametrize("version", [*MODELLED_VERSIONS, "account default"])
def test_created_arranged_downloaded_in_order_and_found_by_name(
    simulator: Sim, start_service: Callable[..., Service], version: str
) -> None:
    if version == "account default":  # a new account: the newest version, the service's default pin
        simulator.state.configure(api_version="2026-11-09")
        service, pinned = start_service(admin_token=ADMIN), "2026-11-09"
    else:
        service, pinned = start_service(admin_token=ADMIN, autoenhance_api_version=version), version
    simulator.state.seed_order(name="3 Elm Road")  # not a match for "oak"
    with service.client() as client:
        order_id, _ = create_arranged_order(simulator, client)
        names, manifest = numbered(client, order_id)
        assert names == ["01 - front.jpg", "02 - kitchen.jpg", "03 - bath.jpg"]
        assert manifest["api_version"] == pinned and manifest["image_order"] == "custom"

        found = client.get("/v1/api/orders", params={"q": "oak", "sort": "-date"}, headers={"X-Admin-Token": ADMIN})
        assert found.status_code == 200, found.text
        assert [o["order_id"] for o in found.json()["orders"]] == [order_id]
        assert client.get("/ready").json()["autoenhance_api_version"] == pinned

    log = list(simulator.state.request_log)
    api_calls = [e for e in log if e["path"].startswith("/v3/")]
    assert api_calls and all(e["api_version"] == pinned for e in api_calls), api_calls
    others = [e for e in log if not e["path"].startswith("/v3/")]
    uploads = "s3" if pinned <= "2025-01-01" else "uploads"  # s3PutObjectUrl, else upload_url / upload_file_url
    assert {e["path"].split("/")[1] for e in others} == {uploads, "assets"}
    assert all(e["api_version"] is None for e in others)  # not sent to upload or asset URLs


def test_sort_overrides_the_order_and_a_later_photo_takes_the_next_number(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(admin_token=ADMIN)
    with service.client() as client:
        order_id, ids = create_arranged_order(simulator, client)
        by_name, manifest = numbered(client, order_id, sort="name")
        assert by_name == ["01 - bath.jpg", "02 - front.jpg", "03 - kitchen.png".replace(".png", ".jpg")]
        assert manifest["image_order"] == "name"
        assert numbered(client, order_id)[0] == ["01 - front.jpg", "02 - kitchen.jpg", "03 - bath.jpg"]

        # Day to Dusk on the front photo: a new image, which sorts before "front.jpg" by name
        dusk = httpx.put(
            f"{simulator.url}/v3/images/{ids['front.jpg']}",
            json={"restage": {"environment": "DUSK"}},
            headers={"x-api-key": "test-upstream-key"},
        )
        assert dusk.status_code == 200, dusk.text
        wait_processed(simulator, order_id, 4)
        assert numbered(client, order_id, sort="name")[0] == [
            "01 - bath.jpg", "04 - front (dusk).jpg", "02 - front.jpg", "03 - kitchen.jpg",
        ]  # fmt: skip
        assert numbered(client, order_id)[0] == [
            "01 - front.jpg", "02 - kitchen.jpg", "03 - bath.jpg", "04 - front (dusk).jpg",
        ]  # fmt: skip

        # the photographer rearranges: numbered afresh, in the new order
        dusk_id = dusk.json()["image_id"]
        simulator.state.arrange(order_id, None, [dusk_id, ids["front.jpg"], ids["kitchen.png"], ids["bath.jpg"]])
        names, manifest = numbered(client, order_id)
        assert names == ["01 - front (dusk).jpg", "02 - front.jpg", "03 - kitchen.jpg", "04 - bath.jpg"]
        assert manifest["image_order"] == "custom"
        simulator.state.arrange(order_id, "-name", None)
        names, manifest = numbered(client, order_id)
        assert names == ["01 - kitchen.jpg", "02 - front.jpg", "03 - front (dusk).jpg", "04 - bath.jpg"]
        assert manifest["image_order"] == "-name"
        assert client.get(f"/v1/orders/{order_id}/images", params={"sort": "size"}).status_code == 422


def test_page_photos_follow_the_order(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token=ADMIN)
    with service.client() as client:
        order_id, _ = create_arranged_order(simulator, client)
        photos = client.get(f"/v1/orders/{order_id}/photos").json()["photos"]
        assert [p["name"] for p in photos] == ["front.jpg", "kitchen.png", "bath.jpg"]
        photos = client.get(f"/v1/orders/{order_id}/photos", params={"sort": "-date_added"}).json()["photos"]
        assert [p["name"] for p in photos] == ["front.jpg", "bath.jpg", "kitchen.png"]


def test_uploads_carry_the_photographers_settings(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(admin_token=ADMIN)
    headers = {"X-Admin-Token": ADMIN}
    chosen = {
        "enhance_type": "neutral", "sky": "WHISPY_CLOUD", "grass": "GREEN", "tvs": "BLACK_OUT",
        "photographer": "REMOVE", "vertical_correction": "false", "privacy": "true",
    }  # fmt: skip
    with service.client() as client:
        for bad in ({"sky": "PURPLE"}, {"enhance_type": "vivid"}, {"privacy": "maybe"}, {"fire_in_fireplaces": "ON"}):
            refused = client.post("/v1/api/create-order", files=UPLOADS[:1], data=bad, headers=headers)
            assert refused.status_code == 422, refused.text
            assert next(iter(bad)) in refused.text
        assert simulator.state.stats["order_create"] == 0 and simulator.state.stats["upload"] == 0  # nothing sent

        created = client.post("/v1/api/create-order", files=UPLOADS[:2], data=chosen, headers=headers)
    assert created.status_code == 200, created.text
    assert created.json()["settings"]["restage"] == {
        "sky": "WHISPY_CLOUD", "grass": "GREEN", "tvs": "BLACK_OUT", "photographer": "REMOVE",
    }  # fmt: skip
    order = simulator.state.get_order(created.json()["order_id"])
    for image_id in order.image_ids:
        settings = simulator.state.images[image_id].settings
        assert settings["enhance_type"] == "neutral"
        assert settings["vertical_correction"] is False and settings["privacy"] is True
        assert settings["restage"] == {"sky": "WHISPY_CLOUD", "grass": "GREEN", "tvs": "BLACK_OUT", "photographer": "REMOVE"}


def test_a_blank_api_version_setting_means_the_pinned_one_and_a_wrong_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`AUTOENHANCE_API_VERSION=` (an empty line in .env) is unset, as the command line reads it."""
    from pydantic import ValidationError

    from app.config import Settings
    from app.core.upstream.client import DEFAULT_API_VERSION

    monkeypatch.setenv("AUTOENHANCE_API_VERSION", "")
    assert Settings(_env_file=None).autoenhance_api_version == DEFAULT_API_VERSION  # type: ignore[call-arg]
    monkeypatch.setenv("AUTOENHANCE_API_VERSION", "soon")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]
