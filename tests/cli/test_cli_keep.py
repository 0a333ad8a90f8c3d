"""Keep what arrived: Ctrl+C in client mode keeps the bytes and says how to go on; a rerun after a
partial ZIP fetches only what is missing; the command's own files never go through a link, never
replace what it did not make, and are checked before a resume trusts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import create_app
from app.config import DEMO_ORDER_ID
from harness.servers import serve
from simulator import Fault, SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.browser_helpers import demo_settings
from tests.support.cli_runner import CLEAN_ENV, ROOT, run_process
from tests.support.tcp_proxy import proxy
from tests.support.zipcheck import check_zip


def images(path: Path) -> list[str]:
    return sorted(n for n in check_zip(path.read_bytes()) if n.endswith((".jpg", ".png")))


def start(*args: str) -> subprocess.Popen[str]:
    env = os.environ | CLEAN_ENV | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_when(process: subprocess.Popen[str], ready: Path, min_bytes: int = 1) -> str:
    """Ctrl+C once `ready` holds `min_bytes`; the command's stderr, flattened."""
    deadline = time.monotonic() + 60
    while not (ready.is_file() and ready.stat().st_size >= min_bytes):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    return " ".join(stderr.split())


@pytest.fixture
def slow_url(tmp_path: Path) -> Iterator[str]:
    """A demo service that takes a second per photo, one at a time, without the archive cache."""
    app = create_app(demo_settings(tmp_path / "data", demo_latency_seconds=1.0, max_concurrent_downloads=1,
                                   cache_ttl_seconds=0))
    with serve(app) as url:
        yield url


# -- Ctrl+C in client mode ------------------------------------------------------------------------


def test_ctrl_c_in_a_streamed_download_keeps_the_bytes_and_the_rerun_continues(slow_url: str, tmp_path: Path) -> None:
    out = tmp_path / "stream.zip"
    args = ("download", DEMO_ORDER_ID, "-o", str(out), "-f", "png")
    err = interrupt_when(start(*args, "--url", slow_url), tmp_path / "stream.zip.part")
    part = tmp_path / "stream.zip.part"
    assert "Interrupted" in err and "kept in" in err and "run the same command again" in err
    kept = part.stat().st_size
    assert kept > 0 and (tmp_path / "stream.zip.part.json").is_file() and not out.exists()

    with proxy(slow_url) as watching:
        code, _, err = run_process(*args, "--url", watching.url)
        requests = watching.requests
    assert code == 0, err
    assert "Resuming the streamed archive" in err
    assert f"range: bytes={kept}-" in requests.lower()  # only the rest was asked for
    assert len(images(out)) == 3
    assert not list(tmp_path.glob("*.part*"))


def test_ctrl_c_while_a_job_runs_says_the_job_goes_on(slow_url: str, tmp_path: Path) -> None:
    out = tmp_path / "job.zip"
    err = interrupt_when(start("download", DEMO_ORDER_ID, "-o", str(out), "--job", "--url", slow_url),
                         tmp_path / "job.zip.part.json")
    assert "Interrupted" in err and "The job goes on" in err and "run the same command again" in err


# -- a rerun after a partial ZIP ----------------------------------------------------------------------


def test_a_rerun_after_a_partial_zip_fetches_only_the_missing_files(simulator: Sim, tmp_path: Path) -> None:
    order = simulator.state.seed_order(name="Top up", images=[SeedImage(name=f"r{n}.jpg", size=6000) for n in range(3)])
    missing = order["images"][1]["image_id"]
    simulator.state.add_fault(Fault(kind="error_status", image_id=missing))
    out = tmp_path / "topup.zip"
    args = ("download", str(order["order_id"]), "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url,
            "--sets", "full,original")
    code, _, err = run_process(*args)
    assert code == 3, err
    assert len(images(out)) == 5  # the original of the failed photo came; its enhanced file did not
    report = zipfile.ZipFile(out).read("_download_report.txt").decode()
    assert "Run the same command again" in report and "GET /orders/" not in report  # the CLI's way, not the API's

    simulator.state.clear_faults()
    simulator.state.reset_stats()
    code, _, err = run_process(*args)
    assert code == 0, err
    assert "holds 5 of its 6 files from an earlier run" in err and "only the missing ones are fetched" in err
    assert "5 of the files came from the earlier run; 1 was downloaded now" in err
    downloads = [e["path"] for e in simulator.state.request_log if e["path"].endswith(("/enhanced", "/original"))]
    assert downloads == [f"/v3/images/{missing}/enhanced"]
    assert len(images(out)) == 6 and "_download_report.txt" not in check_zip(out.read_bytes())

    code, _, err = run_process(*args)  # complete now: a rerun changes nothing and says why
    assert code == 2 and "already holds all 6 files" in err and "--force" in err


@pytest.mark.parametrize("mode", ["stream", "job"])
def test_a_client_mode_rerun_after_a_partial_zip_asks_the_service_for_the_missing_photo_only(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path, mode: str
) -> None:
    """--url: the rerun sends `images=` with the missing photo and merges it in, as direct mode tops up."""
    order = simulator.state.seed_order(name="Top up", images=[SeedImage(name=f"r{n}.jpg", size=6000) for n in range(3)])
    missing = order["images"][1]["image_id"]
    simulator.state.add_fault(Fault(kind="error_status", image_id=missing))
    service = start_service()
    out = tmp_path / "client.zip"
    args = ["download", str(order["order_id"]), "-o", str(out), "--sets", "full,original", "--names", "sequence",
            *(["--job"] if mode == "job" else [])]  # fmt: skip
    code, _, err = run_process(*args, "--url", service.url)
    assert code == 3, err
    first = images(out)
    assert len(first) == 5  # the original of the failed photo came; its enhanced file did not

    simulator.state.clear_faults()
    simulator.state.reset_stats()
    with proxy(service.url) as watching:
        code, _, err = run_process(*args, "--url", watching.url)
        asked = watching.requests
    assert code == 0, err
    assert "holds 5 of its 6 files from an earlier run" in err and "only the missing ones are fetched" in err
    assert "4 of the files came from the earlier run; 2 were downloaded now" in err  # the missing photo, both sets
    downloads = [e["path"] for e in simulator.state.request_log if e["path"].endswith(("/enhanced", "/original"))]
    assert sorted(downloads) == [f"/v3/images/{missing}/enhanced", f"/v3/images/{missing}/original"]
    assert f"images={missing}" in asked
    members = check_zip(out.read_bytes())
    assert len(images(out)) == 6 and set(first) < set(images(out))  # the same names: numbers kept their places
    assert "_download_report.txt" not in members
    manifest = json.loads(members["_manifest.json"])
    assert (manifest["downloaded"], manifest["failed"], manifest["failures"]) == (6, 0, [])
    assert [f["name"] for f in manifest["files"]] == sorted(images(out), key=lambda n: (n.split("/")[1], n))
    assert not list(tmp_path.glob("client.zip.*"))  # nothing of the top-up is left beside it

    code, _, err = run_process(*args, "--url", service.url)  # complete now: a rerun changes nothing, says why
    assert code == 2 and "already holds all 6 files" in err and "--force" in err


@pytest.mark.parametrize("mode", ["stream", "job"])
def test_a_client_mode_rerun_that_still_cannot_get_the_photo_keeps_the_zip_as_it_was(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path, mode: str
) -> None:
    order = simulator.state.seed_order(name="Still", images=[SeedImage(name=f"s{n}.jpg", size=5000) for n in range(2)])
    simulator.state.add_fault(Fault(kind="error_status", image_id=order["images"][0]["image_id"]))
    service = start_service()
    out = tmp_path / "still.zip"
    args = ["download", str(order["order_id"]), "-o", str(out), "--url", service.url, *(["--job"] * (mode == "job"))]
    code, _, err = run_process(*args)
    assert code == 3, err
    before = out.read_bytes()

    code, _, err = run_process(*args)  # the fault is still there: the one photo fails again
    assert code == 3, err
    assert "only the missing ones are fetched" in err and "None of the missing files could be downloaded now" in err
    assert "s0.jpg" in err  # still listed as missing, with its reason
    assert out.read_bytes() == before
    assert not list(tmp_path.glob("still.zip.*"))
    code, _, err = run_process(*args, "--format", "png")  # other options: another ZIP, not a top-up of this one
    assert code == 2 and "exists; pass --force" in err


def test_a_client_mode_top_up_of_a_damaged_zip_leaves_it_and_says_force(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    order = simulator.state.seed_order(name="Dent", images=[SeedImage(name=f"d{n}.jpg", size=5000) for n in range(2)])
    simulator.state.add_fault(Fault(kind="error_status", image_id=order["images"][0]["image_id"]))
    service = start_service()
    out = tmp_path / "dent.zip"
    args = ("download", str(order["order_id"]), "-o", str(out), "--url", service.url)
    assert run_process(*args)[0] == 3
    data = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as archive:  # one kept photo's bytes damaged, its CRC-32 left as it was
        kept = next(i for i in archive.infolist() if i.filename.endswith(".jpg"))
    head = kept.header_offset
    name_and_extra = int.from_bytes(data[head + 26 : head + 28], "little") + int.from_bytes(data[head + 28 : head + 30], "little")
    data[head + 30 + name_and_extra + 100] ^= 0xFF
    out.write_bytes(bytes(data))
    simulator.state.clear_faults()

    code, _, err = run_process(*args)
    assert code == 1, err
    assert "could not be read back" in err and "--force" in err and "Traceback" not in err
    assert out.read_bytes() == bytes(data)
    assert not list(tmp_path.glob("dent.zip.*"))


# -- the command's own files ----------------------------------------------------------------------------


def test_a_link_at_the_part_file_is_never_written_through(simulator: Sim, tmp_path: Path) -> None:
    order_id = str(simulator.state.seed_order(name="L", images=[SeedImage(name="a.jpg", size=4000)])["order_id"])
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file")
    out = tmp_path / "l.zip"
    (tmp_path / "l.zip.part").symlink_to(precious)
    for mode in (["--api-key", TEST_KEY, "--base-url", simulator.url], ["--url", simulator.url]):
        code, _, err = run_process("download", order_id, "-o", str(out), *mode)
        assert code == 2 and "is a link" in err, err
    assert precious.read_text() == "the user's own file" and not out.exists()
    assert (tmp_path / "l.zip.part").is_symlink()
    assert list(simulator.state.request_log) == []  # refused before anything was asked


def test_a_parts_folder_it_did_not_make_is_left_alone(simulator: Sim, tmp_path: Path) -> None:
    order_id = str(simulator.state.seed_order(name="P", images=[SeedImage(name="a.jpg", size=4000)])["order_id"])
    theirs = tmp_path / "p.zip.parts"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "p.zip"), "--api-key", TEST_KEY,
                               "--base-url", simulator.url)
    assert code == 2 and "was not made by this command" in err, err
    assert (theirs / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "p.zip").exists()


def test_a_damaged_part_file_is_not_trusted(tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path / "data", cache_ttl_seconds=0))) as url:
        out = tmp_path / "d.zip"
        args = ("download", DEMO_ORDER_ID, "-o", str(out), "-f", "png")
        with proxy(url, cut_after=1_500_000) as cutting:
            code, _, _ = run_process(*args, "--url", cutting.url, "--retries", "0")
        part = tmp_path / "d.zip.part"
        assert code == 1 and part.stat().st_size > 1000
        data = bytearray(part.read_bytes())
        data[200] ^= 0xFF  # inside the first photo's bytes: its CRC-32 no longer matches
        part.write_bytes(bytes(data))
        code, _, err = run_process(*args, "--url", url)
    assert code == 0, err
    assert "damaged" in err
    assert len(images(out)) == 3  # every member passes its CRC in three readers
