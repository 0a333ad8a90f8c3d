"""`autoenhance-batch download --api-key`: the engine in the CLI's own process, against the simulator.

No service runs in these tests: the CLI talks to the simulator (a real loopback server) directly.
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs

from PIL import Image

from harness.servers import free_port, serve
from simulator import SeedImage
from tests.conftest import TEST_KEY, Sim
from tests.support.cli_runner import run
from tests.support.hostile_upstream import ORDER_ID, Bystander, HostileUpstream, image_bytes
from tests.support.zipcheck import check_zip

ROOT = Path(__file__).resolve().parents[2]


def photo(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 160, 200)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def seed(sim: Sim, count: int = 3, **extra: SeedImage) -> str:
    images = [SeedImage(name=f"room {n}.jpg", data=photo(2400, 1600)) for n in range(1, count + 1)]
    return str(sim.state.seed_order(name="7 Elm Road", images=images)["order_id"])


def direct(sim: Sim, order_id: str, out: Path, *args: str) -> tuple[int, str, str]:
    return run("download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", sim.url, *args)


def asked(sim: Sim) -> list[tuple[str, dict[str, list[str]]]]:
    return [
        (e["path"], parse_qs(e["query"]))
        for e in sim.state.request_log
        if e["path"].endswith(("/enhanced", "/original"))
    ]


def test_direct_download_with_sets_sequence_names_and_max_width(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    out = tmp_path / "listing.zip"
    code, _, err = direct(simulator, order_id, out, "--sets", "full,mls,original", "--names", "sequence", "--yes",
                          "--max-width", "800")
    assert code == 0, err
    assert "Saved" in err and "9 of 9 files" in err
    names = set(check_zip(out.read_bytes()))
    for folder, ext in (("full", ".jpg"), ("mls", ".jpg"), ("original", ".jpg")):
        assert {f"{folder}/0{n} - room {n}{ext}" for n in (1, 2, 3)} <= names
    archive = zipfile.ZipFile(out)
    with Image.open(io.BytesIO(archive.read("full/01 - room 1.jpg"))) as img:
        assert img.width == 800
    with Image.open(io.BytesIO(archive.read("mls/01 - room 1.jpg"))) as img:
        assert img.width == 2048
    with Image.open(io.BytesIO(archive.read("original/01 - room 1.jpg"))) as img:
        assert img.width == 2400
    manifest = json.loads(archive.read("_manifest.json"))
    assert sorted({f["set"] for f in manifest["files"]}) == ["full", "mls", "original"]
    queries = asked(simulator)
    assert len(queries) == 9
    assert sum(q.get("max_width") == ["800"] for _, q in queries) == 3
    assert sum(path.endswith("/original") for path, _ in queries) == 3
    # mls is full resolution: the credit warning came before anything was spent
    assert "Spends up to 3 Autoenhance credits" in err and "3 photos x 1 full-size set (mls)" in err
    assert simulator.state.stats["credits_spent"] == 3
    assert not (tmp_path / "listing.zip.parts").exists() and not (tmp_path / "listing.zip.part").exists()


def test_direct_mode_reports_partial_orders_like_the_service(simulator: Sim, tmp_path: Path) -> None:
    order = simulator.state.seed_order(
        name="Partial", images=[SeedImage(name="a.jpg", data=photo(600, 400)), SeedImage(name="b.jpg", status="processing")]
    )
    out = tmp_path / "p.zip"
    code, _, err = direct(simulator, str(order["order_id"]), out)
    assert code == 3, err
    assert "1 of 2 images; 1 could not be included" in err and "b.jpg" in err
    assert "_download_report.txt" in check_zip(out.read_bytes())


def test_direct_mode_errors_are_one_line_and_cost_no_request(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator, 1)
    simulator.state.reset_stats()
    code, _, err = direct(simulator, "not\x01an-order", tmp_path / "x.zip")  # (a printable text is searched as a name)
    assert code == 2 and "Invalid order id" in err and "Traceback" not in err
    code, _, err = direct(simulator, order_id, tmp_path / "missing" / "x.zip")
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = direct(simulator, order_id, tmp_path / "x.zip", "--sets", "full,poster")
    assert code == 2 and "poster" in err
    code, _, err = direct(simulator, order_id, tmp_path / "x.zip", "--job")
    assert code == 2 and "--url" in err
    assert list(simulator.state.request_log) == []  # refused before any request
    code, _, err = direct(simulator, "00000000-0000-4000-8000-000000000000", tmp_path / "x.zip")
    assert code == 1 and "was not found" in err
    code, _, err = run("download", order_id, "-o", str(tmp_path / "x.zip"), "--api-key", "wrong", "--base-url",
                       simulator.url)
    assert code == 1
    assert not list(tmp_path.iterdir())


def test_the_key_can_come_from_the_environment(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator, 1)
    code, _, err = run("download", order_id, "-o", str(tmp_path / "e.zip"), "--base-url", simulator.url,
                       env={"AUTOENHANCE_API_KEY": TEST_KEY})
    assert code == 0, err
    assert set(check_zip((tmp_path / "e.zip").read_bytes())) == {"room 1.jpg", "_manifest.json"}


def test_an_interrupted_direct_download_keeps_its_photos_and_fetches_only_the_rest(
    simulator: Sim, tmp_path: Path
) -> None:
    order_id = seed(simulator, 6)
    simulator.state.configure(download_latency=0.6, max_concurrent_downloads=None)
    out = tmp_path / "big.zip"
    env = os.environ | {"AUTOENHANCE_API_KEY": TEST_KEY, "AUTOENHANCE_BATCH_URL": "", "COLUMNS": "120"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "download", order_id, "-o", str(out), "--base-url", simulator.url,
         "--sets", "full,web"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    parts = tmp_path / "big.zip.parts"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts.glob("*.img"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    flat = " ".join(stderr.split())
    assert process.returncode == 130, stderr
    assert "Interrupted" in flat and "run the same command again" in flat and "Traceback" not in stderr
    kept = len(list(parts.glob("*.img")))
    assert 3 <= kept < 12
    kept_images = collections.Counter(  # a saved file's sidecar names its key, "set/image id"
        json.loads(p.read_text())["key"].split("/")[1] for p in parts.glob("*.json") if p.name not in ("batch.json", "numbers.json")
    )
    assert sum(kept_images.values()) == kept
    assert not out.exists() and not (tmp_path / "big.zip.part").exists()

    simulator.state.configure(download_latency=0.0)
    simulator.state.reset_stats()
    code, _, err = run("download", order_id, "-o", str(out), "--base-url", simulator.url, "--sets", "full,web",
                       env={"AUTOENHANCE_API_KEY": TEST_KEY})
    assert code == 0, err
    assert f"{kept} files already downloaded" in err
    # Only the rest was fetched: per image, one request for each set not saved. Counted as distinct
    # requests because a request the killed process had sent just before it exited can reach the
    # simulator's log after reset_stats (its loop reads the socket late on a loaded machine); that
    # one is always for a file not saved, which this run asks for too.
    distinct = {(path, tuple(sorted((k, tuple(v)) for k, v in query.items()))) for path, query in asked(simulator)}
    per_image = collections.Counter(path.split("/")[3] for path, _ in distinct)
    assert per_image == {image_id: 2 - kept_images[image_id] for image_id in per_image} and len(distinct) == 12 - kept
    names = check_zip(out.read_bytes())
    assert len([n for n in names if n.endswith(".jpg")]) == 12
    assert not parts.exists()


def test_direct_mode_waits_for_the_order_when_asked(simulator: Sim, tmp_path: Path) -> None:
    order = simulator.state.seed_order(
        name="Fresh", images=[SeedImage(name="ready.jpg", size=3000), SeedImage(name="late.jpg", size=3000)]
    )
    simulator.state.images[order["images"][1]["image_id"]].start_processing(time.time(), 1.5)
    out = tmp_path / "w.zip"
    code, _, err = direct(simulator, str(order["order_id"]), out, "--wait", "--wait-timeout", "20")
    assert code == 0, err
    assert "Waiting for Autoenhance" in err
    assert sorted(check_zip(out.read_bytes())) == ["_manifest.json", "late.jpg", "ready.jpg"]


def test_direct_mode_follows_redirects_only_to_the_asset_hosts_allowed_in_the_environment(tmp_path: Path) -> None:
    """ALLOWED_ASSET_HOSTS means in direct mode what it means to the service (tests/core/test_redirect_policy.py):
    a listed private host is fetched; an unlisted port, or a name resolving to loopback, is refused."""
    bystander = Bystander()
    with serve(bystander) as other_url:
        other_port = other_url.rsplit(":", 1)[1]
        upstream = HostileUpstream({
            "good": "/asset/good",  # the API's own origin
            "listed": f"{other_url}/photo",  # plain http to a loopback address: only if listed
            "unlisted-port": f"http://127.0.0.1:{free_port()}/x",
            "loopback-name": f"https://localhost:{other_port}/secret",  # `localhost` is not the listed host
        })
        with serve(upstream) as upstream_url:
            def download(out: Path, allowed: str) -> tuple[int, str]:
                code, _, err = run("download", ORDER_ID, "-o", str(out), "--api-key", TEST_KEY, "--base-url",
                                   upstream_url, env={"ALLOWED_ASSET_HOSTS": allowed})
                return code, err

            code, err = download(tmp_path / "unlisted.zip", "")
            assert code == 3, err
            assert other_url.removeprefix("http://") in err and bystander.hits == 0  # refused, as before
            assert sorted(check_zip((tmp_path / "unlisted.zip").read_bytes())) == [
                "_download_report.txt", "_manifest.json", "good.jpg"
            ]

            code, err = download(tmp_path / "listed.zip", f" , {other_url.removeprefix('http://')}, ")
    assert code == 3, err  # still partial: the entry names one port of one host
    archive = zipfile.ZipFile(tmp_path / "listed.zip")
    assert archive.read("good.jpg") == image_bytes("good")
    assert archive.read("listed.jpg") == b"internal secret"  # the operator said this host is an asset store
    report = archive.read("_download_report.txt").decode()
    assert "unlisted-port" in report and "is not https" in report
    assert "localhost resolves to 127.0.0.1 is a loopback address" in report
    assert bystander.hits == 1
