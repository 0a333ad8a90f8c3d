"""A full DATA_DIR, for real: a small tmpfs, filled to the last byte after the service started.

The cache is optional and the download is not: the ZIP must still arrive whole, the log must say
"disk full", and a job (which needs the disk) is refused with a 503 that says why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator import SeedImage, SimulatorState
from tests.conftest import Service
from tests.support.zipcheck import check_zip


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (mounting needs root: CI's container and this project's dev machines are)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write zeros until the file system refuses (ENOSPC)."""
    with open(directory / "filler", "wb") as filler, contextlib.suppress(OSError):
        block = b"\0" * (256 * 1024)
        while True:
            filler.write(block)
            filler.flush()
    with contextlib.suppress(OSError), open(directory / "filler-tail", "wb") as tail:  # the last partial block
        while True:
            tail.write(b"\0" * 512)
            tail.flush()


def test_a_full_data_dir_never_breaks_a_download(
    start_service: Callable[..., Service],
    sim_state: SimulatorState,
    small_disk: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    order = sim_state.seed_order(images=[SeedImage(name=f"room-{n}.jpg", size=200_000) for n in range(6)])
    service = start_service(data_dir=small_disk / "data", rate_limit="")
    fill(small_disk)
    with service.client() as client:
        first = client.get(f"/v1/orders/{order['order_id']}/images")
        second = client.get(f"/v1/orders/{order['order_id']}/images")
        job = client.post(f"/v1/orders/{order['order_id']}/jobs")
        ready = client.get("/ready")
    for response in (first, second):
        assert response.status_code == 200 and response.headers["x-cache"] == "miss"
        members = check_zip(response.content)
        assert sorted(m for m in members if m.endswith(".jpg")) == [f"room-{n}.jpg" for n in range(6)]
        assert "_download_report.txt" not in members
    log = capfd.readouterr().err  # the service logs JSON lines to stderr
    assert "archive cache: disk full" in log and "archives are still streamed" in log
    assert log.count("archive cache: disk full") == 1  # said once, then caching pauses
    assert job.status_code == 503, job.text
    assert job.headers["content-type"] == "application/json" and "disk" in job.json()["detail"]
    assert "Retry-After" in job.headers
    assert ready.status_code == 503 and not ready.json()["checks"]["storage"]["ok"]


def test_an_image_that_must_wait_on_a_full_disk_is_reported_not_the_whole_zip(
    start_service: Callable[..., Service], sim_state: SimulatorState, small_disk: Path
) -> None:
    """Images over SPOOL_MEMORY_BYTES wait in DATA_DIR/spool: on a full disk that one is reported."""
    small = [SeedImage(name=f"room-{n}.jpg", size=50_000) for n in range(4)]
    order = sim_state.seed_order(images=[*small, SeedImage(name="panorama.jpg", size=600_000)])
    service = start_service(data_dir=small_disk / "data", rate_limit="", spool_memory_bytes=100_000, retry_attempts=1)
    fill(small_disk)
    with service.client() as client:
        response = client.get(f"/v1/orders/{order['order_id']}/images")
    assert response.status_code == 200
    members = check_zip(response.content)
    assert sorted(m for m in members if m.endswith(".jpg")) == [f"room-{n}.jpg" for n in range(4)]
    report = members["_download_report.txt"].decode()
    assert "panorama.jpg" in report and "disk is full" in report, report
