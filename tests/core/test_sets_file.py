"""Delivery sets as data (DELIVERY_SETS), over real HTTP against the simulator, which renders real photos
and encodes JPEG at the quality asked (so byte sizes are real): a listing-board preset with a 125 KB
cap and a 1280x960 box is met by asking Autoenhance again; a cap that cannot be met is reported."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app import create_app
from app.core.delivery.set_file import SetFileError
from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim, service_settings
from tests.support.cli_runner import run
from tests.support.jobs_helpers import poll
from tests.support.zipcheck import check_zip

SAMPLES = Path(__file__).resolve().parents[2] / "simulator" / "sample_images"
CAP = 125_000

BOARD = f"""
[[sets]]
name = "board"
description = "1280x960, under 125 KB, unbranded"
max_width = 1280
max_height = 960
quality = 90
max_bytes = {CAP}

[[sets]]
name = "tiny"
description = "an impossible cap"
max_width = 1280
max_bytes = 1024

[[sets]]
name = "branded"
description = "free preview with Autoenhance's watermark"
preview = true
watermark = true
dpi = 96
"""


def _portrait() -> bytes:
    with Image.open(SAMPLES / "kitchen.jpg") as image:
        out = io.BytesIO()
        image.rotate(90, expand=True).save(out, "JPEG", quality=95)
        return out.getvalue()


def _order(sim: Sim) -> tuple[str, dict[str, str]]:
    images = [
        SeedImage(name="kitchen.jpg", data=(SAMPLES / "kitchen.jpg").read_bytes()),
        SeedImage(name="exterior.jpg", data=(SAMPLES / "exterior.jpg").read_bytes()),
        SeedImage(name="tall.jpg", data=_portrait()),
    ]
    order = sim.state.seed_order(name="Board Street", images=images)
    return str(order["order_id"]), {str(i["image_name"]): str(i["image_id"]) for i in order["images"]}


@pytest.fixture
def sets_file(tmp_path: Path) -> Path:
    path = tmp_path / "sets.toml"
    path.write_text(BOARD)
    return path


def test_a_board_preset_meets_its_125_kb_cap_and_box_by_asking_again(
    simulator: Sim, start_service: Callable[..., Service], sets_file: Path
) -> None:
    order_id, ids = _order(simulator)
    # the simulator's sizes are real: quality 90 at 1280 px is over the cap, a lower quality is smaller
    sizes = {}
    with httpx.Client(base_url=simulator.url, headers={"x-api-key": TEST_KEY}, follow_redirects=True) as upstream:
        for quality in (90, 50):
            asked = {"format": "jpeg", "preview": "false", "max_width": 1280, "quality": quality}
            sizes[quality] = len(upstream.get(f"/v3/images/{ids['kitchen.jpg']}/enhanced", params=asked).content)
    assert sizes[90] > CAP and sizes[50] < sizes[90]

    service = start_service(delivery_sets=sets_file, allow_anonymous_credits=True)  # full-size sets spend credits
    simulator.state.assets_served.clear()
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"sets": "board"})
        assert response.status_code == 200, response.text
        members = check_zip(response.content)
        photos = {name: data for name, data in members.items() if name.startswith("board/")}
        assert sorted(photos) == ["board/exterior.jpg", "board/kitchen.jpg", "board/tall.jpg"]
        for name, data in photos.items():
            assert len(data) <= CAP, (name, len(data))
            with Image.open(io.BytesIO(data)) as image:
                assert image.width <= 1280 and image.height <= 960, (name, image.size)
        with Image.open(io.BytesIO(photos["board/tall.jpg"])) as tall:
            assert tall.height > 900  # narrowed to fit the box, not shrunk further
        assert simulator.state.assets_served[ids["kitchen.jpg"]] >= 2  # asked again at a lower quality
        assert simulator.state.assets_served[ids["tall.jpg"]] >= 2  # asked again, narrower
        assert simulator.state.stats["credits_spent"] == 3  # full size, one credit per photo however often asked
        manifest = json.loads(members["_manifest.json"])
        assert manifest["options"]["custom_sets"][0]["max_bytes"] == CAP

        cost = client.get(f"/orders/{order_id}/photos", params={"sets": "board,branded"}).json()["cost"]
        assert cost["full_size_sets"] == ["board"] and cost["credits"] == 3  # counted from the definitions

        listed = {s["name"]: s for s in client.get("/api/sets").json()["sets"]}
        assert list(listed) == ["full", "mls", "web", "print", "original", "board", "tiny", "branded"]
        assert (listed["board"]["max_bytes"], listed["board"]["max_height"], listed["board"]["built_in"]) == (
            CAP,
            960,
            False,
        )
        assert listed["branded"]["watermark"] is True and listed["branded"]["spends_credits"] is False
        unknown = client.get(f"/orders/{order_id}/images", params={"sets": "bored"})
        assert unknown.status_code == 422 and "board" in unknown.json()["detail"]


def test_a_cap_that_cannot_be_met_is_reported_not_oversized(
    simulator: Sim, start_service: Callable[..., Service], sets_file: Path
) -> None:
    order_id, ids = _order(simulator)
    service = start_service(delivery_sets=sets_file, allow_anonymous_credits=True)  # full-size sets spend credits
    with service.client() as client:
        job = client.post(f"/orders/{order_id}/jobs", params={"sets": "tiny,branded", "images": "kitchen.jpg"}).json()
        status = poll(client, job["job_id"], lambda s: s["status"] in ("completed", "completed_with_errors", "failed"), timeout=60)
        assert (status["status"], status["downloaded"], status["failed"]) == ("completed_with_errors", 1, 1)
        [failure] = status["failures"]
        assert "cannot meet the tiny set's limits" in failure["reason"] and "1,024" in failure["reason"]
        assert "at quality 20 after 1 more try" in failure["reason"]  # the lowest quality tried, then reported
        members = check_zip(client.get(status["download_url"]).content)
        assert "tiny/kitchen.jpg" not in members and "branded/kitchen.jpg" in members
        assert "tiny" in members["_download_report.txt"].decode()
        with Image.open(io.BytesIO(members["branded/kitchen.jpg"])) as branded:
            assert branded.info.get("dpi") and round(branded.info["dpi"][0]) == 96
    assert simulator.state.assets_served[ids["kitchen.jpg"]] == 1 + 2  # branded once; tiny at 90, then at 20


def test_a_wrong_sets_file_stops_the_start_with_the_field_named(simulator: Sim, tmp_path: Path) -> None:
    bad = tmp_path / "sets.json"
    bad.write_text(json.dumps({"sets": [{"name": "board", "max_bytes": 125000, "quality": 500}]}))
    with pytest.raises(SetFileError, match=r"set #1: quality"):
        create_app(service_settings(simulator.url, tmp_path / "data", delivery_sets=bad))
    bad.write_text(json.dumps({"sets": [{"name": "mls"}]}))
    with pytest.raises(SetFileError, match="already taken"):
        create_app(service_settings(simulator.url, tmp_path / "data", delivery_sets=bad))


def test_the_cli_uses_and_lists_the_operators_sets(simulator: Sim, sets_file: Path, tmp_path: Path) -> None:
    order_id, _ = _order(simulator)
    out = tmp_path / "board.zip"
    env = {"DELIVERY_SETS": str(sets_file)}
    code, _, err = run(
        "download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url, "--sets", "board",
        "--dev-mode", env=env,
    )
    assert code == 0, err
    members = check_zip(out.read_bytes())
    assert all(len(data) <= CAP for name, data in members.items() if name.startswith("board/"))
    code, listed, _ = run("sets", env=env)
    assert code == 0 and "board" in listed and "1280x960, under 125 KB" in listed
