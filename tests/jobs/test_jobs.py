"""The async job door end to end: 202, poll, download; failures, expiry, shutdown, crash, restart.

Everything runs over real loopback HTTP against the simulator. Restart tests stop one service app
and start a new one on the same data_dir; the crash test runs the service in a subprocess and
SIGKILLs it, so nothing gets a chance to clean up.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import app.jobs.runner as jobs_runner
import app.jobs.supervisor as jobs_supervisor
from app import create_app
from app.jobs.supervisor import RESTART_REASON, SHUTDOWN_REASON
from harness.processes import wait_http
from harness.servers import free_port, serve
from simulator import Fault, SeedImage
from tests.conftest import TEST_KEY, Service, Sim, service_settings
from tests.support.jobs_helpers import image_id, poll, seed

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------------------


def create_job(client: httpx.Client, order_id: str, **params: Any) -> dict[str, Any]:
    response = client.post(f"/orders/{order_id}/jobs", params=params)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    return body


def finished(status: dict[str, Any]) -> bool:
    return status["status"] in ("completed", "completed_with_errors", "failed")


def assert_valid_zip(data: bytes, tmp_path: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    path = tmp_path / f"check-{uuid.uuid4().hex}.zip"
    path.write_bytes(data)
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return archive


@contextlib.contextmanager
def service_on(sim: Sim, data_dir: Path, **overrides: Any) -> Iterator[httpx.Client]:
    """A service app on `data_dir`, stopped (lifespan shutdown included) when the block ends."""
    with (
        serve(create_app(service_settings(sim.url, data_dir, **overrides))) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with service.client() as c:
        yield c


# -- the happy path ---------------------------------------------------------------------------------


def test_job_runs_to_complete_and_downloads_as_a_file(simulator: Sim, client: httpx.Client, tmp_path: Path) -> None:
    order_id = seed(
        simulator,
        SeedImage(name="a.jpg", size=200_000),
        SeedImage(name="b.jpg", size=150_000),
        SeedImage(name="c.jpg", size=50_000),
    )
    accepted = create_job(client, order_id, format="jpeg", preview="true")
    job_id = accepted["job_id"]
    assert accepted == {
        "job_id": job_id,
        "status": "queued",
        "status_url": f"/v1/jobs/{job_id}",
        "download_url": f"/v1/jobs/{job_id}/download",
    }

    status = poll(client, job_id, finished)
    assert status["status"] == "completed"
    assert (status["order_id"], status["total"], status["downloaded"], status["failed"]) == (order_id, 3, 3, 0)
    assert status["failures"] == [] and status["error"] is None
    assert status["options"] == {
        "format": "jpeg",
        "quality": None,
        "preview": True,
        "dev_mode": False,
        "sets": ["full"],
        "names": "original",
        "max_width": None,
        "scale": None,
        "sort": None,
        "images": [],
        "template": None,
        "dpi": None,
        "custom_sets": [],
    }
    assert status["finished_at"] and status["expires_at"] > status["finished_at"] and not status["expired"]

    response = client.get(f"/jobs/{job_id}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content) == status["bytes"]
    assert (response.headers["x-total-images"], response.headers["x-downloaded"], response.headers["x-failed"]) == (
        "3",
        "3",
        "0",
    )
    assert response.headers["content-disposition"].startswith("attachment")
    archive = assert_valid_zip(response.content, tmp_path)
    assert sorted(archive.namelist()) == ["_manifest.json", "a.jpg", "b.jpg", "c.jpg"]
    assert len(archive.read("a.jpg")) == 200_000

    ranged = client.get(f"/jobs/{job_id}/download", headers={"Range": "bytes=100-4195"})
    assert ranged.status_code == 206
    assert ranged.content == response.content[100:4196]
    assert ranged.headers["content-range"] == f"bytes 100-4195/{len(response.content)}"


def test_partial_success_is_complete_with_the_failures_listed(
    simulator: Sim, client: httpx.Client, tmp_path: Path
) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=200_000), SeedImage(name="b.jpg", status="processing"))
    status = poll(client, create_job(client, order_id)["job_id"], finished)
    assert (status["status"], status["downloaded"], status["failed"]) == ("completed_with_errors", 1, 1)
    [failure] = status["failures"]
    assert failure["name"] == "b.jpg" and "processing" in failure["reason"] and failure["recovery"]

    response = client.get(status["download_url"])
    assert (response.headers["x-downloaded"], response.headers["x-failed"]) == ("1", "1")
    archive = assert_valid_zip(response.content, tmp_path)
    assert "a.jpg" in archive.namelist()
    assert "b.jpg" in archive.read("_download_report.txt").decode()


def test_nothing_downloadable_fails_the_job_and_download_is_422(simulator: Sim, client: httpx.Client) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", status="processing"), SeedImage(name="b.jpg", status="error"))
    status = poll(client, create_job(client, order_id)["job_id"], finished)
    assert status["status"] == "failed"
    assert status["error"] == "None of the order's 2 images could be downloaded"
    assert sorted(f["name"] for f in status["failures"]) == ["a.jpg", "b.jpg"]

    response = client.get(status["download_url"])
    assert response.status_code == 422
    assert "None of the order's 2 images" in response.json()["detail"]
    assert len(response.json()["failures"]) == 2


def test_progress_is_published_and_download_is_409_while_running(simulator: Sim, client: httpx.Client) -> None:
    order_id = seed(simulator, SeedImage(name="fast.jpg"), SeedImage(name="slow.jpg"))
    simulator.state.add_fault(Fault(kind="latency", image_id=image_id(simulator, order_id, "slow.jpg"), seconds=2))
    job_id = create_job(client, order_id)["job_id"]

    running = poll(client, job_id, lambda s: s["downloaded"] == 1)
    assert running["status"] == "running" and running["started_at"] and running["finished_at"] is None
    early = client.get(f"/jobs/{job_id}/download")
    assert early.status_code == 409
    assert "running" in early.json()["detail"] and early.headers["retry-after"]

    done = poll(client, job_id, finished)
    assert (done["status"], done["downloaded"]) == ("completed", 2)
    assert client.get(f"/jobs/{job_id}/download").status_code == 200


# -- refusals ---------------------------------------------------------------------------------------


def test_refusals_happen_before_any_job_exists(simulator: Sim, client: httpx.Client, service: Service) -> None:
    bad = client.post("/orders/not-a-uuid/jobs")
    assert bad.status_code == 400 and "UUID" in bad.json()["detail"]
    unknown_order = client.post(f"/orders/{uuid.uuid4()}/jobs")
    assert unknown_order.status_code == 404 and unknown_order.json()["detail"]
    empty = client.post(f"/orders/{seed(simulator)}/jobs")
    assert empty.status_code == 422 and "no images" in empty.json()["detail"]
    bad_option = client.post(f"/orders/{seed(simulator, SeedImage(name='a.jpg'))}/jobs", params={"quality": 500})
    assert bad_option.status_code == 422
    assert list((service.settings.jobs_dir).iterdir()) == []
    with sqlite3.connect(service.settings.data_dir / "jobs.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_unknown_job_is_404_for_status_and_download(client: httpx.Client) -> None:
    for path in (f"/jobs/{uuid.uuid4()}", f"/jobs/{uuid.uuid4()}/download", "/jobs/not-a-job-id/download"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]


def test_service_key_guards_job_routes(simulator: Sim, start_service: Callable[..., Service]) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with start_service(service_api_key="s3cret").client() as client:
        assert client.post(f"/orders/{order_id}/jobs").status_code == 401
        accepted = client.post(f"/orders/{order_id}/jobs", headers={"X-API-Key": "s3cret"})
        assert accepted.status_code == 202
        assert client.get(accepted.json()["status_url"]).status_code == 401
        assert client.get(accepted.json()["status_url"], headers={"X-API-Key": "s3cret"}).status_code == 200


# -- expiry -----------------------------------------------------------------------------------------


def test_expired_archive_is_deleted_and_download_is_410(
    simulator: Sim, start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_supervisor, "CLEANUP_INTERVAL_SECONDS", 0.1)
    service = start_service()
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with service.client() as client:
        status = poll(client, create_job(client, order_id)["job_id"], finished)
        archive = service.settings.jobs_dir / f"{status['job_id']}.zip"
        assert client.get(status["download_url"]).status_code == 200 and archive.is_file()

        service.settings.job_ttl_seconds = 0  # the manager reads the TTL on every use (the setting's floor is 60 s)
        deadline = time.monotonic() + 5
        while archive.exists():  # the background cleanup deletes it
            assert time.monotonic() < deadline, "cleanup never deleted the expired archive"
            time.sleep(0.05)
        gone = client.get(status["download_url"])
        assert gone.status_code == 410 and "expired" in gone.json()["detail"]
        after = client.get(status["status_url"]).json()
        assert (after["status"], after["expired"], after["downloaded"]) == ("completed", True, 1)


# -- shutdown, crash, restart -----------------------------------------------------------------------


def test_shutdown_fails_the_running_job_and_the_next_start_runs_the_queued_one(
    simulator: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_runner, "MAX_RUNNING_JOBS", 1)
    data_dir = tmp_path / "data"
    slow_order = seed(simulator, SeedImage(name="slow.jpg"))
    simulator.state.add_fault(
        Fault(kind="latency", image_id=image_id(simulator, slow_order, "slow.jpg"), seconds=3, times=1)
    )
    waiting_order = seed(simulator, SeedImage(name="later.jpg", size=100_000), name="Second")
    with service_on(simulator, data_dir) as client:
        slow = create_job(client, slow_order)["job_id"]
        poll(client, slow, lambda s: s["status"] == "running")
        waiting = create_job(client, waiting_order)["job_id"]
        assert client.get(f"/jobs/{waiting}").json()["status"] == "queued"  # the only slot is taken
    # the app has shut down: the running job was failed on the way out, the queued one left queued
    with service_on(simulator, data_dir) as client:
        interrupted = client.get(f"/jobs/{slow}").json()
        assert (interrupted["status"], interrupted["error"]) == ("failed", SHUTDOWN_REASON)
        assert interrupted["finished_at"]
        resumed = poll(client, waiting, finished)
        assert (resumed["status"], resumed["downloaded"], resumed["total"]) == ("completed", 1, 1)
        response = client.get(resumed["download_url"])
        assert zipfile.ZipFile(io.BytesIO(response.content)).namelist()[0] == "later.jpg"
    assert not list((data_dir / "jobs").glob("*.part"))


CRASHABLE_SERVICE = textwrap.dedent("""
    import sys
    import uvicorn
    from app import create_app
    from app.config import Settings

    sim_url, key, data_dir, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = Settings(_env_file=None, autoenhance_api_key=key, autoenhance_base_url=sim_url, data_dir=data_dir,
                        image_timeout_seconds=30, log_level="WARNING")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
""")
"""The service in its own process, so the test can SIGKILL it: a real crash, no shutdown hooks."""


def test_a_crash_leaves_no_job_running_after_the_next_start(simulator: Sim, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    order_id = seed(simulator, SeedImage(name="fast.jpg", size=300_000), SeedImage(name="slow.jpg"))
    simulator.state.add_fault(
        Fault(kind="latency", image_id=image_id(simulator, order_id, "slow.jpg"), seconds=20, times=1)
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHABLE_SERVICE, simulator.url, TEST_KEY, str(data_dir), str(port)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=process)  # the harness's start-up wait (60 s, load-proof)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            job_id = create_job(client, order_id)["job_id"]
            poll(client, job_id, lambda s: s["downloaded"] == 1)  # fast.jpg is in; slow.jpg is held upstream
        part = data_dir / "jobs" / f"{job_id}.1.zip.part"  # attempt 1's
        deadline = time.monotonic() + 5
        while not part.exists():
            assert time.monotonic() < deadline, "the job never started writing its archive"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:  # what the dead process left behind
        assert db.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone() == ("running",)
    with service_on(simulator, data_dir) as client:
        status = client.get(f"/jobs/{job_id}").json()
        assert (status["status"], status["error"]) == ("failed", RESTART_REASON)
        assert status["finished_at"]
        assert client.get(f"/jobs/{job_id}/download").status_code == 422
    assert not part.exists()


def test_a_finished_job_survives_a_restart(simulator: Sim, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    order_id = seed(simulator, SeedImage(name="a.jpg", size=120_000), SeedImage(name="b.jpg", status="processing"))
    with service_on(simulator, data_dir) as client:
        before = poll(client, create_job(client, order_id)["job_id"], finished)
        original = client.get(before["download_url"]).content
    with service_on(simulator, data_dir) as client:
        after = client.get(before["status_url"]).json()
        assert after == before
        response = client.get(before["download_url"])
        assert response.status_code == 200 and response.content == original
        assert (response.headers["x-downloaded"], response.headers["x-failed"]) == ("1", "1")
