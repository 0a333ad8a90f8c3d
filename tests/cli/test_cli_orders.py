"""The command's direct mode with today's API: orders found by name, downloads by name, the pinned version."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from simulator import SeedImage
from tests.conftest import TEST_KEY, Sim
from tests.support.cli_runner import run
from tests.support.zipcheck import check_zip


def seed(sim: Sim) -> dict[str, str]:
    """Three orders; two of them on an Oak street. Name -> order id."""
    ids = {}
    for name in ("12 Oak Street", "3 Elm Road", "12 Oak Street Annex"):
        images = [SeedImage(name="kitchen.jpg", size=300), SeedImage(name="bath.jpg", size=300)]
        ids[name] = str(sim.state.seed_order(name=name, images=images)["order_id"])
    return ids


def direct(sim: Sim, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run(*args, "--api-key", TEST_KEY, "--base-url", sim.url, env=env)


def test_orders_lists_and_searches_by_name(simulator: Sim) -> None:
    ids = seed(simulator)
    code, out, err = direct(simulator, "orders")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == [ids["12 Oak Street Annex"], ids["3 Elm Road"], ids["12 Oak Street"]]
    assert lines[0].endswith("12 Oak Street Annex") and "2 photos" in lines[0]

    code, out, _ = direct(simulator, "orders", "--search", "oak", "--sort", "name")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [ids["12 Oak Street"], ids["12 Oak Street Annex"]]
    code, out, err = direct(simulator, "orders", "--search", "nowhere")
    assert code == 0 and out == "" and "No order's name contains 'nowhere'" in err
    listed = [e for e in simulator.state.request_log if e["path"] == "/v3/orders"]
    assert listed and all(e["api_version"] == "2026-11-09" for e in listed)
    assert "q=oak" in listed[1]["query"] and "sort=name" in listed[1]["query"]


def test_orders_needs_a_key(simulator: Sim) -> None:
    code, _, err = run("orders", "--base-url", simulator.url)
    assert code == 2 and "--api-key" in err
    assert list(simulator.state.request_log) == []


def test_download_by_a_name_that_picks_one_order(simulator: Sim, tmp_path: Path) -> None:
    ids = seed(simulator)
    out = tmp_path / "oak.zip"
    code, _, err = direct(simulator, "download", "12 oak street", "-o", str(out), "--names", "sequence", "--sort", "name")
    assert code == 0, err
    assert f"is {ids['12 Oak Street']}" in err  # the exact name wins over the Annex that also contains it
    archive = out.read_bytes()
    assert sorted(m for m in check_zip(archive) if not m.startswith("_")) == ["01 - bath.jpg", "02 - kitchen.jpg"]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read("_manifest.json"))
    assert manifest["order_id"] == ids["12 Oak Street"] and manifest["image_order"] == "name"
    assert manifest["api_version"] == "2026-11-09"

    code, _, err = direct(simulator, "download", "Elm", "-o", str(tmp_path / "elm.zip"))
    assert code == 0, err  # the only order containing it
    assert zipfile.ZipFile(tmp_path / "elm.zip").read("_manifest.json").decode().count(ids["3 Elm Road"]) == 1


def test_a_name_that_matches_several_orders_lists_them(simulator: Sim, tmp_path: Path) -> None:
    ids = seed(simulator)
    out = tmp_path / "x.zip"
    code, _, err = direct(simulator, "download", "Oak", "-o", str(out))
    assert code == 1 and not out.exists()
    assert "2 orders match 'Oak'" in err
    assert ids["12 Oak Street"] in err and ids["12 Oak Street Annex"] in err
    code, _, err = direct(simulator, "download", "Harbour", "-o", str(out))
    assert code == 1 and "No order's name contains 'Harbour'" in err


def test_a_name_needs_direct_mode(simulator: Sim, tmp_path: Path) -> None:
    code, _, err = run("download", "12 Oak Street", "--url", simulator.url, "-o", str(tmp_path / "x.zip"))
    assert code == 2 and "direct mode" in err


def test_the_api_version_comes_from_the_environment(simulator: Sim, tmp_path: Path) -> None:
    ids = seed(simulator)
    out = tmp_path / "a.zip"
    code, _, err = direct(
        simulator, "download", ids["3 Elm Road"], "-o", str(out), env={"AUTOENHANCE_API_VERSION": "2025-05-08"}
    )
    assert code == 0, err
    api_calls = [e for e in simulator.state.request_log if e["path"].startswith("/v3/")]
    assert api_calls and all(e["api_version"] == "2025-05-08" for e in api_calls)
    assert all(e["api_version"] is None for e in simulator.state.request_log if e["path"].startswith("/assets/"))
    code, _, err = direct(
        simulator, "download", ids["3 Elm Road"], "-o", str(tmp_path / "b.zip"), env={"AUTOENHANCE_API_VERSION": "soon"}
    )
    assert code == 1 and "AUTOENHANCE_API_VERSION must be a date" in err


def test_a_rerun_keeps_the_numbers_of_the_interrupted_run(simulator: Sim, tmp_path: Path) -> None:
    """An interrupted run numbered bath 01 and kitchen 02; a photo added since ("garden", between them
    by name) takes the next number on the rerun instead of renumbering the kitchen."""
    from app.cli.direct import parts_path
    from app.cli.saved_parts import FolderKeep
    from app.core.models import BatchOptions, NameStyle

    order = simulator.state.seed_order(
        name="Rerun", images=[SeedImage(name="kitchen.jpg", size=300), SeedImage(name="bath.jpg", size=300)]
    )
    order_id = str(order["order_id"])
    ids = {img["image_name"]: img["image_id"] for img in order["images"]}
    out = tmp_path / "rerun.zip"
    options = BatchOptions(names=NameStyle.sequence, sort="name")
    kept = FolderKeep(parts_path(out), {"order_id": order_id, "options": options.key()})  # as the cut run left it
    kept.keep_numbers({ids["bath.jpg"]: 1, ids["kitchen.jpg"]: 2})
    simulator.state.seed_order(order_id=order_id, images=[SeedImage(name="garden.jpg", size=300)])

    code, _, err = direct(simulator, "download", order_id, "-o", str(out), "--names", "sequence", "--sort", "name")
    assert code == 0, err
    names = sorted(m for m in check_zip(out.read_bytes()) if not m.startswith("_"))
    assert names == ["01 - bath.jpg", "02 - kitchen.jpg", "03 - garden.jpg"]
    assert not parts_path(out).exists()  # complete: the kept files and numbers are gone
