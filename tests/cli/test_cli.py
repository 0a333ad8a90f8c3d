"""`python -m app`: the CLI against a real service on loopback (demo mode, or the simulator)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI as _FastAPI

from app import create_app
from app.config import DEMO_ORDER_ID
from harness.servers import free_port, serve
from simulator import Fault, SeedImage
from tests.conftest import Service, Sim
from tests.support.browser_helpers import demo_settings
from tests.support.cli_runner import CLEAN_ENV, run
from tests.support.tcp_proxy import proxy
from tests.support.zipcheck import check_zip

ROOT = Path(__file__).resolve().parents[2]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("cli")))) as url:
        yield url


def zip_images(path: Path, suffix: str) -> list[str]:
    return sorted(name for name in check_zip(path.read_bytes()) if name.endswith(suffix))


def job_id_from(requests: str) -> str:
    found = re.findall(r"GET /v1/jobs/([0-9a-f-]{36})/download", requests)
    assert found, requests
    return found[0]


# -- help ----------------------------------------------------------------------------------------


def test_help_reads_well() -> None:
    env = os.environ | {"COLUMNS": "100"}
    top = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert top.returncode == 0, top.stderr
    for text in ("download", "serve", "sample-order", "autoenhance-batch download", "python -m app",
                 "ORDER=$(autoenhance-batch sample-order)"):
        assert text in top.stdout
    download = subprocess.run([sys.executable, "-m", "app", "download", "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert download.returncode == 0
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", download.stdout).split())  # rich's boxes and wrapping aside
    for text in ("--no-preview", "spends credits", "--dev-mode", "--job", "resumes", "AUTOENHANCE_BATCH_URL",
                 "AUTOENHANCE_BATCH_KEY", "Exit status: 0", "jpeg|png|webp|avif|jxl", "--api-key", "AUTOENHANCE_API_KEY",
                 "--sets", "mls", "--names"):
        assert text in flat, text
    assert subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, capture_output=True, timeout=60).returncode != 0


# -- streamed ------------------------------------------------------------------------------------


SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "redis", "taskiq", "taskiq_redis")


def test_the_console_entry_loads_no_server_package() -> None:
    """`autoenhance-batch` (pyproject [project.scripts]) is a small client: importing its module, in a
    fresh interpreter, loads none of the server's packages, and the entry runs."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["autoenhance-batch"].partition(":")
    probe = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(SERVER_PACKAGES)!r}))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == []
    entry = f"import sys; sys.argv = ['autoenhance-batch', '--help']; from {module} import {function}; {function}()"
    helped = subprocess.run([sys.executable, "-c", entry], cwd=ROOT, env=os.environ | CLEAN_ENV, capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "download" in helped.stdout and "serve" in helped.stdout


def test_download_streams_the_order_into_a_valid_zip(demo_url: str, tmp_path: Path) -> None:
    out = tmp_path / "demo.zip"
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--url", demo_url)
    assert code == 0, err
    assert len(zip_images(out, ".jpg")) == 3
    assert "3 of 3 images" in err
    assert re.search(r"images\s.*3/3", err)  # the images bar reached its end
    assert re.search(r"bytes\s.*kB", err)
    assert not (tmp_path / "demo.zip.part").exists()

    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--url", demo_url)
    assert code == 2 and "already holds all 3 files" in err and "--force" in err  # a usage error, like the others
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--url", demo_url, "-f", "webp", "-q", "40",
                       "--force")
    assert code == 0, err
    assert len(zip_images(out, ".webp")) == 3


def test_an_unknown_order_is_about_the_order_and_a_wrong_address_about_the_address(
    demo_url: str, tmp_path: Path
) -> None:
    unknown = "00000000-0000-4000-8000-00000000dead"
    code, _, err = run("download", unknown, "-o", str(tmp_path / "x.zip"), "--url", demo_url)
    assert code == 1 and f"Order {unknown} was not found on Autoenhance (HTTP 404)" in err
    assert "--url is its address" not in err  # the service answered: the address is right
    with serve(_FastAPI()) as elsewhere:  # another web service: any unknown route is a bare "Not Found"
        code, _, err = run("download", unknown, "-o", str(tmp_path / "y.zip"), "--url", elsewhere)
    assert code == 1 and f"Is {elsewhere} an Autoenhance Batch service? --url is its address" in err, err


def test_full_resolution_without_dev_mode_warns_about_credits(demo_url: str, tmp_path: Path) -> None:
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "a.zip"), "--url", demo_url, "--no-preview", "--yes")
    assert code == 0
    assert "Spends up to 3 Autoenhance credits" in err and "3 photos x 1 full-size set (full)" in err
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "b.zip"), "--url", demo_url, "--no-preview",
                       "--dev-mode")
    assert code == 0 and "credit" not in err


def test_url_and_key_come_from_flags_or_environment(tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path / "data", service_api_key="cli-key"))) as url:
        code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "a.zip"), "--url", url)
        assert code == 1 and "Missing or invalid X-API-Key (HTTP 401)" in err
        code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "b.zip"), "-u", url, "-k", "cli-key")
        assert code == 0, err
        env = {"AUTOENHANCE_BATCH_URL": url, "AUTOENHANCE_BATCH_KEY": "cli-key"}
        code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "c.zip"), "--job", env=env)
        assert code == 0, err
    assert (tmp_path / "b.zip").read_bytes() != b""
    assert len(zip_images(tmp_path / "c.zip", ".jpg")) == 3


def test_errors_are_one_clear_line(demo_url: str, tmp_path: Path) -> None:
    code, _, err = run("download", "not-an-order", "-o", str(tmp_path / "x.zip"), "--url", demo_url)
    assert code == 2 and "Invalid order id" in err and "HTTP" not in err  # refused before any request
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "no" / "x.zip"), "--url", demo_url)
    assert code == 2 and "does not exist" in err
    code, _, err = run("download", "00000000-0000-4000-8000-000000000000", "-o", str(tmp_path / "x.zip"),
                       "--url", demo_url, "--job")
    assert code == 1 and "(HTTP 404)" in err
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(tmp_path / "x.zip"), "--url",
                       f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "Could not reach the service" in err
    code, _, err = run("download", DEMO_ORDER_ID, "--quality", "95", "--url", demo_url)
    assert code == 2 and "--quality" in err and "must be 1-90" in err
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_partial_result_exits_3_and_lists_the_failures(simulator: Sim, service: Service, tmp_path: Path) -> None:
    order = simulator.state.seed_order(name="Partial", images=[SeedImage(name="a.jpg", size=5000),
                                                               SeedImage(name="b.jpg", status="processing")])
    for job in ([], ["--job"]):
        out = tmp_path / f"partial{len(job)}.zip"
        code, _, err = run("download", str(order["order_id"]), "-o", str(out), "--url", service.url, *job)
        assert code == 3, err
        assert "1 of 2 images; 1 could not be included" in " ".join(err.split())
        assert "b.jpg" in err and "_download_report.txt" in err
        assert "_download_report.txt" in check_zip(out.read_bytes())


def test_failed_job_is_an_error(simulator: Sim, service: Service, tmp_path: Path) -> None:
    order = simulator.state.seed_order(name="Broken", images=[SeedImage(name="a.jpg", size=5000)])
    simulator.state.add_fault(Fault(kind="asset_404", order_id=str(order["order_id"])))
    code, _, err = run("download", str(order["order_id"]), "-o", str(tmp_path / "x.zip"), "--url", service.url, "--job")
    assert code == 1 and "The job failed" in err
    assert not (tmp_path / "x.zip").exists()


# -- jobs, cut and resumed -----------------------------------------------------------------------


def test_job_download_resumes_with_range_after_the_connection_drops(demo_url: str, tmp_path: Path) -> None:
    out = tmp_path / "png.zip"
    with proxy(demo_url, cut_after=1_500_000) as cutting:
        code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--url", cutting.url, "--job", "-f", "png")
        requests = cutting.requests
        assert cutting.cuts >= 2
    assert code == 0, err
    assert "Connection lost at" in err and "Resumed with Range from byte" in err
    assert re.search(r"Range: bytes=\d+-", requests, re.IGNORECASE)
    assert re.search(r"If-Range: \"", requests, re.IGNORECASE)  # only the same file may continue
    whole = httpx.get(f"{demo_url}/v1/jobs/{job_id_from(requests)}/download", timeout=60).content
    assert out.read_bytes() == whole  # byte-identical to one uninterrupted download
    assert len(zip_images(out, ".png")) == 3
    assert not list(tmp_path.glob("*.part*"))


def test_interrupted_download_resumes_on_the_next_run(demo_url: str, tmp_path: Path) -> None:
    out = tmp_path / "resume.zip"
    args = ("download", DEMO_ORDER_ID, "-o", str(out), "--job", "-f", "png")
    with proxy(demo_url, cut_after=1_500_000) as cutting:
        code, _, err = run(*args, "--url", cutting.url, "--retries", "0")
    assert code == 1
    assert "run the same command again to resume" in err
    part = tmp_path / "resume.zip.part"
    kept = part.stat().st_size
    assert 0 < kept < 1_500_000
    assert (tmp_path / "resume.zip.part.json").is_file()
    assert not out.exists()

    with proxy(demo_url) as watching:  # the network is fine again
        code, _, err = run(*args, "--url", watching.url)
        requests = watching.requests
    assert code == 0, err
    assert "Resuming job" in err
    assert f"range: bytes={kept}-" in requests.lower()
    assert "POST /v1/orders/" not in requests  # the same job, not a new one
    whole = httpx.get(f"{demo_url}/v1/jobs/{job_id_from(requests)}/download", timeout=60).content
    assert out.read_bytes() == whole
    assert not part.exists() and not (tmp_path / "resume.zip.part.json").exists()


# -- streamed, cut and resumed -------------------------------------------------------------------


@pytest.fixture
def uncached_demo_url(tmp_path: Path) -> Iterator[str]:
    """A demo service without the archive cache: every stream is a new layout, resumed from its record."""
    with serve(create_app(demo_settings(tmp_path / "data", cache_ttl_seconds=0))) as url:
        yield url


def etag_sent(requests: str) -> str:
    found = re.findall(r"If-Range: (\"[0-9a-f]{32}\")", requests, re.IGNORECASE)
    assert found, requests
    return found[0]


def replay(url: str, etag: str) -> bytes:
    """The uninterrupted bytes of that layout, replayed by the service."""
    response = httpx.get(
        f"{url}/v1/orders/{DEMO_ORDER_ID}/images", params={"format": "png", "preview": "true", "dev_mode": "false"},
        headers={"Range": "bytes=0-", "If-Range": etag}, timeout=60,
    )
    assert response.status_code == 206
    return response.content


def test_streamed_download_resumes_with_if_range_after_the_connection_drops(
    uncached_demo_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "stream.zip"
    with proxy(uncached_demo_url, cut_after=1_500_000) as cutting:
        code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--url", cutting.url, "-f", "png")
        requests = cutting.requests
        assert cutting.cuts >= 1
    assert code == 0, err
    assert "Connection lost at" in err and "Resumed with Range from byte" in err
    assert re.search(r"Range: bytes=\d+-", requests, re.IGNORECASE)
    assert out.read_bytes() == replay(uncached_demo_url, etag_sent(requests))
    assert len(zip_images(out, ".png")) == 3
    assert not list(tmp_path.glob("*.part*"))


def test_interrupted_stream_resumes_on_the_next_run(uncached_demo_url: str, tmp_path: Path) -> None:
    out = tmp_path / "stream.zip"
    args = ("download", DEMO_ORDER_ID, "-o", str(out), "-f", "png")
    with proxy(uncached_demo_url, cut_after=1_500_000) as cutting:
        code, _, err = run(*args, "--url", cutting.url, "--retries", "0")
    assert code == 1 and "run the same command again to resume" in err
    kept = (tmp_path / "stream.zip.part").stat().st_size
    assert 0 < kept <= 1_500_000 and (tmp_path / "stream.zip.part.json").is_file()

    with proxy(uncached_demo_url) as watching:
        code, _, err = run(*args, "--url", watching.url)
        requests = watching.requests
    assert code == 0, err
    assert "Resuming the streamed archive" in err
    assert f"range: bytes={kept}-" in requests.lower()
    assert out.read_bytes() == replay(uncached_demo_url, etag_sent(requests))
    assert len(zip_images(out, ".png")) == 3
    assert not list(tmp_path.glob("*.part*"))


@pytest.mark.heavy
def test_stopped_while_the_job_runs_the_next_run_follows_the_same_job(tmp_path: Path) -> None:
    app = create_app(demo_settings(tmp_path / "data", demo_latency_seconds=1.0, max_concurrent_downloads=1))
    out = tmp_path / "slow.zip"
    with serve(app) as url:
        command = [sys.executable, "-m", "app", "download", DEMO_ORDER_ID, "-o", str(out), "--job", "--url", url]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        state = tmp_path / "slow.zip.part.json"
        deadline = time.monotonic() + 30
        while not state.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # Ctrl+C while the job is still running
        assert process.wait(15) != 0
        assert not out.exists() and state.exists()
        with proxy(url) as watching:
            code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--job", "--url", watching.url)
            requests = watching.requests
    assert code == 0, err
    assert "Resuming job" in err
    assert "POST " not in requests  # followed the job already running instead of starting another
    assert len(zip_images(out, ".jpg")) == 3


def test_a_kept_part_of_an_expired_job_is_dropped_and_a_new_job_made(tmp_path: Path) -> None:
    app = create_app(demo_settings(tmp_path / "data"))
    out = tmp_path / "late.zip"
    args = ("download", DEMO_ORDER_ID, "-o", str(out), "--job", "-f", "png")
    with serve(app) as url:
        with proxy(url, cut_after=1_500_000) as cutting:
            code, _, _ = run(*args, "--url", cutting.url, "--retries", "0")
            first_job = job_id_from(cutting.requests)
        assert code == 1 and (tmp_path / "late.zip.part").exists()
        (app.state.settings.jobs_dir / f"{first_job}.zip").unlink()  # what the expiry sweep does
        code, _, err = run(*args, "--url", url)
        assert code == 1
        assert "expired" in err and "run the command again to prepare a new job" in err
        assert not (tmp_path / "late.zip.part").exists() and not (tmp_path / "late.zip.part.json").exists()
        code, _, err = run(*args, "--url", url)
    assert code == 0, err
    assert len(zip_images(out, ".png")) == 3


def test_a_part_file_from_other_options_is_not_resumed(demo_url: str, tmp_path: Path) -> None:
    out = tmp_path / "o.zip"
    with proxy(demo_url, cut_after=1_500_000) as cutting:
        code, _, _ = run("download", DEMO_ORDER_ID, "-o", str(out), "--job", "-f", "png", "--url", cutting.url,
                         "--retries", "0")
    assert code == 1 and (tmp_path / "o.zip.part").exists()
    code, _, err = run("download", DEMO_ORDER_ID, "-o", str(out), "--job", "-f", "webp", "--url", demo_url)
    assert code == 0, err
    assert "Resuming" not in err
    assert len(zip_images(out, ".webp")) == 3


# -- sample-order and serve ----------------------------------------------------------------------


def test_sample_order_prints_the_new_id(demo_url: str) -> None:
    code, out, err = run("sample-order", "--url", demo_url)
    assert code == 0, err
    assert UUID.match(out.strip()) and out.strip() != DEMO_ORDER_ID
    assert "Created Sample order with 3 photos" in err
    assert httpx.get(f"{demo_url}/v1/orders/{out.strip()}/images", timeout=60).status_code == 200


def test_sample_order_needs_the_admin_token_when_set(tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path, admin_token="cli-admin"))) as url:
        code, _, err = run("sample-order", "--url", url)
        assert code == 1 and "Missing or invalid X-Admin-Token (HTTP 401)" in err
        code, out, _ = run("sample-order", "--url", url, env={"ADMIN_TOKEN": "cli-admin"})
        assert code == 0 and UUID.match(out.strip())


def test_serve_runs_the_service(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"DATA_DIR": str(tmp_path), "AUTOENHANCE_API_KEY": "", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert health.json()["mode"] == "demo"
    finally:
        process.terminate()
        process.wait(15)


