"""Delivery sets, numbered names, max_width/scale and AVIF/JPEG XL, through the real route and simulator.

Every check reads the ZIP (members, folders, pixels) and the simulator's request log (what was
asked of Autoenhance), so a set that quietly fetched the wrong rendition fails here.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from urllib.parse import parse_qs

import pillow_jxl  # noqa: F401  (JPEG XL decoding for the checks)
import pytest
from PIL import Image

from app.core.delivery.sets import credit_cost, parse_sets
from app.core.models import BatchOptions, NameStyle
from app.errors import InvalidOption
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.photos import photo
from tests.support.zipcheck import check_zip


@pytest.fixture
def paying(start_service: Callable[..., Service]) -> Service:
    """The service with full-resolution downloads open to these anonymous test callers."""
    return start_service(allow_anonymous_credits=True)


def seed_photos(sim: Sim) -> tuple[str, list[str]]:
    order = sim.state.seed_order(
        name="12 Oak Street",
        images=[
            SeedImage(name="front.jpg", data=photo(3000, 2000, (180, 120, 90))),
            SeedImage(name="kitchen.png", data=photo(2600, 1700, (90, 140, 200))),
            SeedImage(name="bath.jpg", data=photo(1200, 800, (60, 200, 120))),
        ],
    )
    return str(order["order_id"]), [img["image_id"] for img in order["images"]]


def downloads(sim: Sim) -> list[tuple[str, dict[str, list[str]]]]:
    """(path, query) of every download the simulator was asked for."""
    return [
        (entry["path"], parse_qs(entry["query"]))
        for entry in sim.state.request_log
        if entry["path"].endswith(("/enhanced", "/original"))
    ]


def test_four_sets_each_in_its_own_folder_with_the_right_renditions(simulator: Sim, paying: Service) -> None:
    order_id, image_ids = seed_photos(simulator)
    with paying.client() as client:
        response = client.get(
            f"/orders/{order_id}/images",
            params={"sets": "original,web,mls,full", "names": "sequence", "preview": "false", "format": "png"},
        )
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    check_zip(response.content)
    names = set(archive.namelist())
    expected = {
        f"{folder}/{number} - {stem}{ext}"
        for folder, exts in {
            "full": (".png", ".png", ".png"),
            "mls": (".jpg", ".jpg", ".jpg"),
            "web": (".jpg", ".jpg", ".jpg"),
            "original": (".jpg", ".png", ".jpg"),
        }.items()
        for number, stem, ext in zip(("01", "02", "03"), ("front", "kitchen", "bath"), exts, strict=True)
    }
    assert names == expected | {"_manifest.json"}

    def size(name: str) -> tuple[int, int]:
        with Image.open(io.BytesIO(archive.read(name))) as img:
            return img.size

    assert size("full/01 - front.png") == (3000, 2000)  # preview=false: full resolution
    assert size("mls/01 - front.jpg") == (2048, 1365)
    assert size("web/01 - front.jpg") == (1024, 683)
    assert size("web/03 - bath.jpg") == (1024, 683)
    assert size("original/01 - front.jpg") == (3000, 2000)
    assert all(len(archive.read(n)) < 4_000_000 for n in names if n.startswith("mls/"))

    manifest = json.loads(archive.read("_manifest.json"))
    assert manifest["sets"] == ["full", "mls", "web", "original"]
    assert manifest["photos"] == 3 and manifest["total"] == 12 and manifest["downloaded"] == 12
    assert {(m["set"], m["name"].split("/")[0]) for m in manifest["files"]} == {
        (s, s) for s in ("full", "mls", "web", "original")
    }

    asked = downloads(simulator)
    assert len(asked) == 12
    by_kind: dict[str, list[dict[str, list[str]]]] = {}
    for path, query in asked:
        assert path.split("/")[3] in image_ids
        if path.endswith("/original"):
            by_kind.setdefault("original", []).append(query)
        elif query.get("max_width") == ["2048"]:
            by_kind.setdefault("mls", []).append(query)
        elif query.get("max_width") == ["1024"]:
            by_kind.setdefault("web", []).append(query)
        else:
            by_kind.setdefault("full", []).append(query)
    assert {k: len(v) for k, v in by_kind.items()} == {"full": 3, "mls": 3, "web": 3, "original": 3}
    assert all(q == {} for q in by_kind["original"])
    assert all(q["format"] == ["jpeg"] and q["preview"] == ["false"] for q in by_kind["mls"])
    assert all(q["format"] == ["jpeg"] and q["preview"] == ["true"] for q in by_kind["web"])
    assert all(q["format"] == ["png"] and q["preview"] == ["false"] for q in by_kind["full"])


def test_default_archive_is_unchanged_flat_and_original_names(simulator: Sim, service: Service) -> None:
    order_id, _ = seed_photos(simulator)
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images")
    assert response.status_code == 200
    names = set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    assert names == {"front.jpg", "kitchen.jpg", "bath.jpg", "_manifest.json"}


def test_max_width_and_scale_reach_autoenhance_and_shape_the_full_set(simulator: Sim, paying: Service) -> None:
    order_id, _ = seed_photos(simulator)
    with paying.client() as client:
        narrow = client.get(f"/orders/{order_id}/images", params={"max_width": 500, "preview": "false"})
        half = client.get(f"/orders/{order_id}/images", params={"scale": 0.5, "preview": "false"})
    assert narrow.status_code == 200 and half.status_code == 200
    with Image.open(io.BytesIO(zipfile.ZipFile(io.BytesIO(narrow.content)).read("front.jpg"))) as img:
        assert img.size == (500, 333)
    with Image.open(io.BytesIO(zipfile.ZipFile(io.BytesIO(half.content)).read("front.jpg"))) as img:
        assert img.size == (1500, 1000)
    queries = [q for _, q in downloads(simulator)]
    assert sum(q.get("max_width") == ["500"] for q in queries) == 3
    assert sum(q.get("scale") == ["0.5"] for q in queries) == 3


@pytest.mark.parametrize(("fmt", "pil", "ext"), [("avif", "AVIF", ".avif"), ("jxl", "JXL", ".jxl")])
def test_avif_and_jpeg_xl_are_real_images_with_the_right_extension(
    simulator: Sim, service: Service, fmt: str, pil: str, ext: str
) -> None:
    order_id, _ = seed_photos(simulator)
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"format": fmt})
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert set(archive.namelist()) == {f"front{ext}", f"kitchen{ext}", f"bath{ext}", "_manifest.json"}
    with Image.open(io.BytesIO(archive.read(f"front{ext}"))) as img:
        assert img.format == pil
        assert img.width == 1024  # the free preview
    assert all(q["format"] == [fmt] for _, q in downloads(simulator))


def test_the_simulator_answers_avif_and_jxl_with_their_content_types(simulator: Sim) -> None:
    import httpx

    _, image_ids = seed_photos(simulator)
    with httpx.Client(base_url=simulator.url, headers={"x-api-key": "test-upstream-key"}) as client:
        for fmt, content_type in (("avif", "image/avif"), ("jxl", "image/jxl")):
            response = client.get(f"/v3/images/{image_ids[0]}/enhanced", params={"format": fmt}, follow_redirects=True)
            assert response.status_code == 200
            assert response.headers["content-type"] == content_type
        bad = client.get(f"/v3/images/{image_ids[0]}/enhanced", params={"format": "gif"})
        assert bad.status_code == 422


def test_unknown_set_is_refused_before_any_upstream_call(simulator: Sim, service: Service) -> None:
    order_id, _ = seed_photos(simulator)
    simulator.state.reset_stats()
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"sets": "full,poster"})
        names = client.get(f"/orders/{order_id}/images", params={"names": "random"})
    assert response.status_code == 422
    assert "poster" in response.json()["detail"] and "mls" in response.json()["detail"]
    assert names.status_code == 422
    assert list(simulator.state.request_log) == []


def test_sets_in_a_job_and_failures_name_their_set(simulator: Sim, service: Service) -> None:
    order = simulator.state.seed_order(
        name="Half ready",
        images=[
            SeedImage(name="front.jpg", data=photo(1600, 1000, (200, 10, 10))),
            SeedImage(name="later.jpg", size=10_000, status="processing"),
        ],
    )
    with service.client() as client:
        created = client.post(f"/orders/{order['order_id']}/jobs", params={"sets": "web,original"})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        for _ in range(200):
            job = client.get(f"/jobs/{job_id}").json()
            if job["status"] in ("completed", "completed_with_errors", "failed"):
                break
            import time

            time.sleep(0.05)
        assert job["status"] == "completed_with_errors", job  # a photo still processing
        assert job["options"]["sets"] == ["web", "original"]
        data = client.get(f"/jobs/{job_id}/download").content
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    # the original of an image still processing exists; its enhanced web rendition does not yet
    assert {"web/front.jpg", "original/front.jpg", "original/later.jpg"} <= names
    assert "web/later.jpg" not in names
    manifest = json.loads(archive.read("_manifest.json"))
    assert [(f["name"], f["set"]) for f in manifest["failures"]] == [("web/later.jpg", "web")]
    assert "set web" in archive.read("_download_report.txt").decode()


def test_credit_cost_counts_full_size_sets_and_caps_at_one_credit_per_photo() -> None:
    assert credit_cost(10, BatchOptions()).credits == 0
    cost = credit_cost(10, BatchOptions(preview=False, sets=("full", "mls", "web", "original")))
    assert cost.full_size_sets == ("full", "mls") and cost.downloads == 20 and cost.credits == 10
    assert "10 photos x 2 full-size sets" in cost.sentence()
    assert credit_cost(10, BatchOptions(sets=("mls",), dev_mode=True)).credits == 0
    assert credit_cost(4, BatchOptions(sets=("web", "original"))).credits == 0


def test_parse_sets_is_canonical_and_strict() -> None:
    assert parse_sets(None) == ("full",)
    assert parse_sets(" Original , mls,mls ") == ("mls", "original")
    assert parse_sets("") == ("full",)
    with pytest.raises(InvalidOption):
        parse_sets("full,thumbs")


def test_options_round_trip_and_every_choice_changes_the_cache_key() -> None:
    base = BatchOptions()
    variants = [
        BatchOptions(sets=("full", "mls")),
        BatchOptions(names=NameStyle.sequence),
        BatchOptions(max_width=800),
        BatchOptions(scale=0.5),
    ]
    keys = {base.key(), *(v.key() for v in variants)}
    assert len(keys) == 5
    for options in [base, *variants]:
        assert BatchOptions.from_dict(json.loads(json.dumps(options.as_dict()))) == options
    # jobs stored before sets existed still load
    assert BatchOptions.from_dict({"format": "png", "quality": None, "preview": True, "dev_mode": False}).sets == (
        "full",
    )
