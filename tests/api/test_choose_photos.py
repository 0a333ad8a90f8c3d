"""Choosing photos on every door, over real HTTP against the simulator: `images=` on the ZIP route, jobs
and the photos listing; `--only`/`--exclude` on the CLI (client and direct modes). An unknown name is
a 422 before any download; numbers keep each photo's place in the whole order; the cache key, the
credit count, the report and the manifest follow the choice."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run
from tests.support.jobs_helpers import poll
from tests.support.zipcheck import check_zip

NAMES = ("front.jpg", "kitchen.jpg", "bath.jpg", "garden.jpg", "plan.png")


def _order(sim: Sim, *, processing: str | None = None) -> tuple[str, dict[str, str]]:
    images = [SeedImage(name=n, status="processing" if n == processing else "processed") for n in NAMES]
    order = sim.state.seed_order(name="9 Elm Road", images=images)
    return str(order["order_id"]), {str(i["image_name"]): str(i["image_id"]) for i in order["images"]}


def test_images_narrows_the_zip_by_names_or_ids_and_keeps_the_numbers(simulator: Sim, service: Service) -> None:
    order_id, ids = _order(simulator)
    with service.client() as client:
        chosen = {"images": f"kitchen.jpg,{ids['garden.jpg']}", "names": "sequence"}
        response = client.get(f"/orders/{order_id}/images", params=chosen)
        assert response.status_code == 200, response.text
        members = check_zip(response.content)
        assert sorted(members) == ["02 - kitchen.jpg", "04 - garden.jpg", "_manifest.json"]
        assert members["02 - kitchen.jpg"] == simulator.state.synthetic_bytes(ids["kitchen.jpg"])
        manifest = json.loads(members["_manifest.json"])
        assert manifest["photos"] == 2 and manifest["total"] == 2 and manifest["downloaded"] == 2
        assert manifest["options"]["images"] == [ids["kitchen.jpg"], ids["garden.jpg"]]  # resolved, order's order
        assert response.headers["x-total-images"] == "2"

        # the same choice spelled otherwise is the same archive (one cache key); another choice is not
        simulator.state.assets_served.clear()
        again = client.get(
            f"/orders/{order_id}/images",
            params={"images": f"{ids['garden.jpg']}, kitchen.jpg ,kitchen.jpg", "names": "sequence"},
        )
        assert again.headers.get("x-cache") == "hit" and again.content == response.content
        assert sum(simulator.state.assets_served.values()) == 0
        whole = client.get(f"/orders/{order_id}/images", params={"names": "sequence"})
        assert len(check_zip(whole.content)) == len(NAMES) + 1


def test_an_unknown_name_is_a_422_before_any_download(simulator: Sim, service: Service) -> None:
    order_id, _ = _order(simulator)
    simulator.state.assets_served.clear()
    with service.client() as client:
        for route, method in (("images", "GET"), ("jobs", "POST"), ("photos", "GET")):
            response = client.request(method, f"/orders/{order_id}/{route}", params={"images": "kitchen.jpg,pool.jpg"})
            assert response.status_code == 422, (route, response.text)
            assert "'pool.jpg'" in response.json()["detail"] and "kitchen" not in response.json()["detail"]
    assert sum(simulator.state.assets_served.values()) == 0
    assert list(service.settings.jobs_dir.iterdir()) == []


def test_jobs_count_report_and_list_only_the_chosen_photos(simulator: Sim, service: Service) -> None:
    order_id, ids = _order(simulator, processing="bath.jpg")
    with service.client() as client:
        job = client.post(f"/orders/{order_id}/jobs", params={"images": "front.jpg,bath.jpg"}).json()
        status = poll(client, job["job_id"], lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
        assert (status["status"], status["total"], status["downloaded"], status["failed"]) == ("completed_with_errors", 2, 1, 1)
        assert status["options"]["images"] == [ids["front.jpg"], ids["bath.jpg"]]
        members = check_zip(client.get(status["download_url"]).content)
        assert sorted(members) == ["_download_report.txt", "_manifest.json", "front.jpg"]
        report = members["_download_report.txt"].decode()
        assert "Photos in order: 2 (chosen with images=, of 5)" in report
        assert f"images={ids['front.jpg']},{ids['bath.jpg']}" in report  # the retry asks for the same photos

        photos = client.get(
            f"/orders/{order_id}/photos", params={"images": "front.jpg,garden.jpg", "preview": "false"}
        ).json()
        assert [p["chosen"] for p in photos["photos"]] == [True, False, False, True, False]
        assert photos["chosen"] == 2 and photos["cost"]["credits"] == 2  # full size: a credit per chosen photo
        assert client.get(f"/orders/{order_id}/photos").json()["chosen"] == 5


def test_cli_only_and_exclude_take_names_and_patterns_in_both_modes(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    order_id, _ = _order(simulator)
    service = start_service()
    client_out = tmp_path / "client.zip"
    code, _, err = run(
        "download", order_id, "--url", service.url, "-o", str(client_out), "--only", "*.jpg", "--exclude", "ba*",
        "--names", "sequence",
    )
    assert code == 0, err
    members = check_zip(client_out.read_bytes())
    assert sorted(members) == ["01 - front.jpg", "02 - kitchen.jpg", "04 - garden.jpg", "_manifest.json"]

    direct_out = tmp_path / "direct.zip"
    code, _, err = run(
        "download", order_id, "-o", str(direct_out), "--api-key", TEST_KEY, "--base-url", simulator.url,
        "--only", "plan.png", "--only", "front.jpg",
    )
    assert code == 0, err
    assert "2 photos (chosen of 5)" in err
    with zipfile.ZipFile(io.BytesIO(direct_out.read_bytes())) as zf:
        assert zf.namelist() == ["front.jpg", "plan.jpg", "_manifest.json"]

    code, _, err = run("download", order_id, "--url", service.url, "-o", str(tmp_path / "x.zip"), "--only", "pool*")
    assert code == 1 and "--only 'pool*' matches no photo" in err
    assert not (tmp_path / "x.zip").exists()
