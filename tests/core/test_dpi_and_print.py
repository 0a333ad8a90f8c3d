"""`dpi` on every door and the `print` set, over real HTTP against the simulator, which renders real
photos and writes the asked density into each JPEG (so the test reads what Autoenhance was asked)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run
from tests.support.zipcheck import check_zip

SAMPLES = Path(__file__).resolve().parents[2] / "simulator" / "sample_images"


def _order(sim: Sim) -> str:
    photo = (SAMPLES / "kitchen.jpg").read_bytes()
    return str(sim.state.seed_order(name="Print Lane", images=[SeedImage(name="kitchen.jpg", data=photo)])["order_id"])


def _density(data: bytes) -> tuple[tuple[float, float] | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        dpi = image.info.get("dpi")
        return (tuple(round(d) for d in dpi) if dpi else None), image.size  # type: ignore[return-value]


def test_dpi_reaches_the_download_and_print_is_full_size_300_dpi_and_charged(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service(allow_anonymous_credits=True)  # print spends credits: only for callers trusted to
    order_id = _order(simulator)
    with service.client() as client:
        response = client.get(f"/orders/{order_id}/images", params={"sets": "full,print", "dpi": 150})
        assert response.status_code == 200, response.text
        members = check_zip(response.content)
        assert _density(members["full/kitchen.jpg"]) == ((150, 150), (1024, 683))  # the free preview, at 150 dpi
        assert _density(members["print/kitchen.jpg"]) == ((300, 300), (1800, 1200))  # full resolution, 300 dpi
        assert simulator.state.stats["credits_spent"] == 1  # print is full size: it spends the credit

        cost = client.get(f"/orders/{order_id}/photos", params={"sets": "print"}).json()["cost"]
        assert cost["full_size_sets"] == ["print"] and cost["credits"] == 1

        plain = check_zip(client.get(f"/orders/{order_id}/images").content)
        assert _density(plain["kitchen.jpg"])[0] is None  # no dpi asked: none written

        too_low = client.get(f"/orders/{order_id}/images", params={"dpi": 50})
        assert too_low.status_code == 422 and "dpi" in too_low.json()["detail"]

        sets = {s["name"]: s for s in client.get("/api/sets").json()["sets"]}
        assert list(sets) == ["full", "mls", "web", "print", "original"]
        assert (sets["print"]["dpi"], sets["print"]["quality"], sets["print"]["spends_credits"]) == (300, 90, True)
        assert sets["print"]["max_width"] is None and sets["web"]["spends_credits"] is False


def test_the_cli_takes_dpi_and_lists_the_sets(simulator: Sim, start_service: Callable[..., Service], tmp_path: Path) -> None:
    order_id = _order(simulator)
    out = tmp_path / "direct.zip"
    code, _, err = run(
        "download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url, "--dpi", "200",
        "--sets", "full,print", "--dev-mode",
    )
    assert code == 0, err
    members = check_zip(out.read_bytes())
    assert _density(members["full/kitchen.jpg"])[0] == (200, 200)
    assert _density(members["print/kitchen.jpg"])[0] == (300, 300)

    service = start_service()
    code, listed, err = run("sets", "--url", service.url)
    assert code == 0, err
    assert "print" in listed and "300 dpi" in listed
    code, listed, _ = run("sets")
    assert code == 0 and "print" in listed
