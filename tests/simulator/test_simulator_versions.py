"""The simulator per Autoenhance API version: one contract test per behaviour and modelled version.

Documented (../reference, 2026 notes): `x-api-version` overrides the account's version; the upload
URL is `s3PutObjectUrl` up to 2025-01-01, `upload_url` from 2025-05-08 and `upload_file_url` in
2026-11-09; `sky_replacement` + `cloud_type` fold into `restage.sky` from 2026-07-01; Day to Dusk is
refused at creation with 422 PREMIUM_RESTAGE_ON_INITIAL_PROCESSING and makes a new image once
processed; orders carry `default_image_sort_order`, take `sort_images_by`, and list with `q`/`sort`.
Inferred (and tested as the simulator's choice, not as fact): channels from 2026-07-01, additive
features on every version, the premium edit's path (PUT /v3/images/{id}) and its new image's name.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from harness.servers import serve
from simulator import SeedImage, SimulatorState, create_app
from simulator.versions import MODELLED_VERSIONS

KEY = "versions-key"
UPLOAD_KEY = {
    "2025-01-01": "s3PutObjectUrl",
    "2025-05-08": "upload_url",
    "2026-07-01": "upload_url",
    "2026-10-01": "upload_url",
    "2026-11-09": "upload_file_url",
}
ALL_UPLOAD_KEYS = {"s3PutObjectUrl", "upload_url", "upload_file_url"}
SKY_IN_RESTAGE = {v: v >= "2026-07-01" for v in MODELLED_VERSIONS}  # inferred gate for answers; documented fold
CHANNELS = {v: v >= "2026-07-01" for v in MODELLED_VERSIONS}  # inferred


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (120, 130, 140)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[str, SimulatorState]]:
    state = SimulatorState(api_keys={KEY})
    with serve(create_app(state)) as url:
        yield url, state


def api(url: str, version: str | None) -> httpx.Client:
    headers = {"x-api-key": KEY} | ({"x-api-version": version} if version else {})
    return httpx.Client(base_url=url, headers=headers, timeout=30)


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_upload_url_has_the_versions_name_and_takes_the_bytes(sim: tuple[str, SimulatorState], version: str) -> None:
    url, state = sim
    with api(url, version) as client:
        created = client.post("/v3/images/", json={"image_name": "front.jpg", "content_type": "image/jpeg"}).json()
    key = UPLOAD_KEY[version]
    assert ALL_UPLOAD_KEYS & created.keys() == {key}
    put = httpx.put(created[key], content=jpeg(), headers={"Content-Type": "image/jpeg"})
    assert put.status_code == 200
    assert state.images[created["image_id"]].data == jpeg()


def test_the_account_version_answers_requests_without_the_header() -> None:
    state = SimulatorState(api_keys={KEY}, api_version="2026-11-09")
    with serve(create_app(state)) as url:
        with api(url, None) as client:
            assert "upload_file_url" in client.post("/v3/images/", json={"image_name": "a.jpg"}).json()
        with api(url, "2025-01-01") as client:  # the header overrides the account's version
            created = client.post("/v3/images/", json={"image_name": "a.jpg"}).json()
            assert ALL_UPLOAD_KEYS & created.keys() == {"s3PutObjectUrl"}
        told = httpx.put(f"{url}/_simulator/config", json={"api_version": "2025-05-08"})
        assert told.status_code == 200 and told.json()["api_version"] == "2025-05-08"
        with api(url, None) as client:
            assert ALL_UPLOAD_KEYS & client.post("/v3/images/", json={"image_name": "a.jpg"}).json().keys() == {
                "upload_url"
            }
        assert httpx.put(f"{url}/_simulator/config", json={"api_version": "May 2025"}).status_code == 422
        with api(url, "yesterday") as client:
            refused = client.post("/v3/images/", json={"image_name": "a.jpg"})
        assert refused.status_code == 422 and "x-api-version" in refused.json()["detail"]["headers"]
        with api(url, "2026-09-15") as client:  # between releases: the newest version on or before it (inferred)
            assert "upload_url" in client.post("/v3/images/", json={"image_name": "a.jpg"}).json()


def test_a_lenient_account_answers_every_upload_key() -> None:
    """No version told and no header: the simulator's historical answer (tests written before versions)."""
    state = SimulatorState(api_keys={KEY})
    with serve(create_app(state)) as url, api(url, None) as client:
        assert client.post("/v3/images/", json={"image_name": "a.jpg"}).json().keys() >= ALL_UPLOAD_KEYS


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_legacy_sky_fields_fold_into_restage_sky(sim: tuple[str, SimulatorState], version: str) -> None:
    url, _ = sim
    with api(url, version) as client:
        legacy = client.post(
            "/v3/images/", json={"image_name": "a.jpg", "sky_replacement": True, "cloud_type": "LOW_CLOUD"}
        ).json()
        modern = client.post(
            "/v3/images/",
            json={"image_name": "b.jpg", "restage": {"sky": "WHISPY_CLOUD", "grass": "GREEN", "tvs": "BLACK_OUT"}},
        ).json()
        refused = client.post("/v3/images/", json={"image_name": "c.jpg", "restage": {"sky": "PURPLE"}})
        unknown = client.post("/v3/images/", json={"image_name": "c.jpg", "restage": {"pool": "BLUE"}})
    assert refused.status_code == 422 and "restage" in refused.json()["detail"]["json"]
    assert unknown.status_code == 422
    if SKY_IN_RESTAGE[version]:
        assert "sky_replacement" not in legacy and "cloud_type" not in legacy
        assert legacy["restage"]["sky"] == "LOW_CLOUD"
        assert modern["restage"] == {
            "sky": "WHISPY_CLOUD", "grass": "GREEN", "fire_in_fireplaces": "AS_SHOT", "tvs": "BLACK_OUT",
            "photographer": "AS_SHOT", "environment": "AS_SHOT",
        }  # fmt: skip
    else:  # the SDKs of these versions validate cloud_type against CLEAR/LOW_CLOUD/HIGH_CLOUD
        assert (legacy["sky_replacement"], legacy["cloud_type"]) == (True, "LOW_CLOUD")
        assert (modern["sky_replacement"], modern["cloud_type"]) == (True, None)
        assert "restage" not in modern


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_ai_version_channels_where_the_version_has_them(sim: tuple[str, SimulatorState], version: str) -> None:
    url, _ = sim
    with api(url, version) as client:
        default = client.post("/v3/images/", json={"image_name": "a.jpg"}).json()
        latest = client.post("/v3/images/", json={"image_name": "a.jpg", "ai_version": "latest"})
        numbered = client.post("/v3/images/", json={"image_name": "a.jpg", "ai_version": "5.x"}).json()
    assert numbered["ai_version"] == "5.x"
    if CHANNELS[version]:
        assert default["ai_version"] == "latest"  # "The default is Latest"
        assert latest.status_code == 200 and latest.json()["ai_version"] == "latest"
    else:
        assert default["ai_version"] == "4.x"
        assert latest.status_code == 422 and "ai_version" in latest.json()["detail"]["json"]


def seed_arranged(state: SimulatorState) -> tuple[str, list[str]]:
    """An order uploaded as kitchen, bath, front; arranged by the photographer as front, kitchen, bath."""
    order = state.seed_order(
        name="7 Oak Avenue",
        images=[SeedImage(name="kitchen.jpg", size=100), SeedImage(name="bath.jpg", size=100)],
    )
    order = state.seed_order(order_id=order["order_id"], images=[SeedImage(name="front.jpg", size=100)])
    ids = {img["image_name"]: img["image_id"] for img in order["images"]}
    custom = [ids["front.jpg"], ids["kitchen.jpg"], ids["bath.jpg"]]
    state.arrange(order["order_id"], "custom", custom)
    return str(order["order_id"]), custom


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_orders_keep_the_photographers_order(sim: tuple[str, SimulatorState], version: str) -> None:
    url, state = sim
    order_id, _ = seed_arranged(state)

    def names(**params: str) -> list[str]:
        with api(url, version) as client:
            response = client.get(f"/v3/orders/{order_id}", params=params)
        assert response.status_code == 200, response.text
        return [img["image_name"] for img in response.json()["images"]]

    with api(url, version) as client:
        assert client.get(f"/v3/orders/{order_id}").json()["default_image_sort_order"] == "custom"
        assert client.get(f"/v3/orders/{order_id}", params={"sort_images_by": "size"}).status_code == 422
    assert names() == names(sort_images_by="custom") == ["front.jpg", "kitchen.jpg", "bath.jpg"]
    assert names(sort_images_by="name") == ["bath.jpg", "front.jpg", "kitchen.jpg"]
    assert names(sort_images_by="-name") == ["kitchen.jpg", "front.jpg", "bath.jpg"]
    assert names(sort_images_by="date_added") == ["kitchen.jpg", "bath.jpg", "front.jpg"]
    assert names(sort_images_by="-date_added") == ["front.jpg", "bath.jpg", "kitchen.jpg"]


def test_arranging_is_checked() -> None:
    state = SimulatorState(api_keys={KEY})
    with serve(create_app(state)) as url:
        order_id, custom = seed_arranged(state)
        arrange = f"{url}/_simulator/orders/{order_id}/arrangement"
        assert httpx.put(arrange, json={"custom_order": [*custom, "someone-else"]}).status_code == 422
        assert httpx.put(arrange, json={"default_image_sort_order": "size"}).status_code == 422
        answer = httpx.put(arrange, json={"default_image_sort_order": "-name"})
        assert answer.status_code == 200 and answer.json()["default_image_sort_order"] == "-name"
        assert [i["image_name"] for i in answer.json()["images"]] == ["kitchen.jpg", "front.jpg", "bath.jpg"]


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_order_list_searches_sorts_and_pages(version: str) -> None:
    state = SimulatorState(api_keys={KEY})
    for name in ("12 Oak Street", "3 Elm Road", "7 oak avenue", "Oakland loft", "Harbour view"):
        state.seed_order(name=name, images=[SeedImage(name="a.jpg", size=10)])
    with serve(create_app(state)) as url, api(url, version) as client:

        def page(**params: str | int) -> dict[str, object]:
            response = client.get("/v3/orders/", params=params)
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        def names(body: dict[str, object]) -> list[str]:
            return [o["name"] for o in body["orders"]]  # type: ignore[attr-defined,index]

        assert names(page(per_page=15))[0] == "Harbour view"  # newest first by default
        assert names(page(q="oak", per_page=15)) == ["Oakland loft", "7 oak avenue", "12 Oak Street"]
        assert names(page(q="OAK", sort="name", per_page=15)) == ["12 Oak Street", "7 oak avenue", "Oakland loft"]
        assert names(page(q="oak", sort="date", per_page=15)) == ["12 Oak Street", "7 oak avenue", "Oakland loft"]
        first = page(q="oak", sort="-name", per_page=2)
        assert names(first) == ["Oakland loft", "7 oak avenue"]
        token = first["pagination"]["next_offset"]  # type: ignore[index]
        second = page(q="oak", sort="-name", per_page=2, offset=token)
        assert names(second) == ["12 Oak Street"] and second["pagination"]["next_offset"] is None  # type: ignore[index]
        assert client.get("/v3/orders/", params={"sort": "size"}).status_code == 422
        assert client.get("/v3/orders/", params={"offset": "not-a-token"}).status_code == 422


@pytest.mark.parametrize("version", MODELLED_VERSIONS)
def test_day_to_dusk_is_a_premium_edit_of_a_processed_image(version: str) -> None:
    state = SimulatorState(api_keys={KEY})
    order = state.seed_order(
        name="Dusk", images=[SeedImage(name="front.jpg", size=500), SeedImage(name="back.jpg", size=500)]
    )
    front = order["images"][0]["image_id"]
    dusk = {"restage": {"environment": "DUSK"}}
    with serve(create_app(state)) as url, api(url, version) as client:
        at_creation = client.post("/v3/images/", json={"image_name": "x.jpg", "order_id": order["order_id"], **dusk})
        assert at_creation.status_code == 422
        assert at_creation.json()["detail"]["code"] == "PREMIUM_RESTAGE_ON_INITIAL_PROCESSING"
        at_processing = client.post(f"/v3/orders/{order['order_id']}/process", json=dusk)
        assert at_processing.status_code == 422
        assert at_processing.json()["detail"]["code"] == "PREMIUM_RESTAGE_ON_INITIAL_PROCESSING"
        assert len(state.orders[order["order_id"]].image_ids) == 2  # nothing was created by the refusals

        waiting = client.post("/v3/images/", json={"image_name": "late.jpg", "order_id": order["order_id"]}).json()
        not_yet = client.put(f"/v3/images/{waiting['image_id']}", json=dusk)
        assert not_yet.status_code == 422 and not_yet.json()["detail"]["code"] == "IMAGE_NOT_PROCESSED"

        edited = client.put(f"/v3/images/{front}", json=dusk)
        assert edited.status_code == 200, edited.text
        new = edited.json()
        assert new["image_id"] != front and new["order_id"] == order["order_id"]
        assert new["image_name"] == "front (dusk).jpg" and new["source_image_id"] == front
        listed = client.get(f"/v3/orders/{order['order_id']}").json()
    assert [i["image_id"] for i in listed["images"]][-1] == new["image_id"]  # added last
    assert listed["total_images"] == 4
    assert state.images[front].settings.get("restage") is None  # the original is left unchanged
