"""A full DATA_DIR, for real: a small tmpfs, filled to the last byte after the service started.

The cache is optional and the download is not: the ZIP must still arrive whole, the log must say
"disk full", and a job (which needs the disk) is refused with a 503 that says why. A file that
cannot be spooled (not even begun, or not finished) is a failed file in the report, whether a
live batch or a resume was fetching it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator import Fault, SeedImage, SimulatorState
from tests.conftest import Service
from tests.support.zipcheck import check_zip


@contextlib.contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A size-limited tmpfs (mounting needs root: CI's container and this project's dev machines are)."""
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """16 MiB, to be filled byte by byte."""
    with tmpfs(tmp_path / "disk", "size=16m") as mount:
        yield mount


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """Room for bytes but only 1000 files: once they are used, not even an empty spool file can be made."""
    with tmpfs(tmp_path / "disk", "size=16m,nr_inodes=1000") as mount:
        yield mount


def fill(directory: Path) -> None:
    """Write zeros until the file system refuses (ENOSPC).

    Unbuffered: a short last write must not leave bytes in a buffer whose flush on close fails outside
    the suppress (buffered, it did when the free space ended a few KiB short of a whole block, as it
    does once the service has written its 4 KiB share secret there).
    """
    with open(directory / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        block = b"\0" * (256 * 1024)
        while True:
            filler.write(block)
    with open(directory / "filler-tail", "wb", buffering=0) as tail, contextlib.suppress(OSError):  # the last bytes
        while True:
            tail.write(b"\0" * 512)


def use_every_inode(directory: Path) -> None:
    """Create empty files until the file system refuses (ENOSPC: no inode left)."""
    (directory / "inodes").mkdir()
    with contextlib.suppress(OSError):
        for n in range(1_000_000):
            (directory / "inodes" / str(n)).touch()


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


def test_a_spool_file_that_cannot_even_be_created_is_reported_not_a_hung_archive(
    start_service: Callable[..., Service], sim_state: SimulatorState, few_inodes: Path
) -> None:
    """With SPOOL_MEMORY_BYTES=0 every image waits on disk from its first byte: no inode, no spool."""
    order = sim_state.seed_order(images=[SeedImage(name=f"room-{n}.jpg", size=50_000) for n in range(3)])
    service = start_service(data_dir=few_inodes / "data", rate_limit="", spool_memory_bytes=0, retry_attempts=1)
    use_every_inode(few_inodes)
    with service.client(timeout=20) as client:
        response = client.get(f"/v1/orders/{order['order_id']}/images")
        in_flight = client.get("/api/stats").json()["downloads"]["in_flight"]
    assert response.status_code == 422, response.text
    failures = response.json()["failures"]
    assert sorted(f["name"] for f in failures) == [f"room-{n}.jpg" for n in range(3)]
    assert all("the service's disk is full" in f["reason"] for f in failures), failures
    assert all("free space in DATA_DIR" in f["recovery"] for f in failures), failures
    assert in_flight == 0


def test_a_resume_that_cannot_spool_a_file_on_a_full_disk_reports_it(
    start_service: Callable[..., Service], sim_state: SimulatorState, small_disk: Path, redis_prefix: str
) -> None:
    """The file never sent before the cut is fetched by the resume; on a full disk it cannot wait there.

    The layout is recorded in Redis (the full disk could not record its completion), so what is
    tested is the resume's own download: the small files wait in memory, the large one is reported
    in the completed archive's report, and a replay of the whole layout agrees byte for byte.
    """
    small = [SeedImage(name=f"room-{n}.jpg", size=50_000) for n in range(4)]
    order = sim_state.seed_order(images=[*small, SeedImage(name="panorama.jpg", size=600_000)])
    order_id, panorama = str(order["order_id"]), order["images"][-1]["image_id"]
    service = start_service(
        data_dir=small_disk / "data",
        rate_limit="",
        spool_memory_bytes=100_000,
        retry_attempts=1,
        cache_ttl_seconds=0,
        redis_url="redis://127.0.0.1:6379",
        redis_key_prefix=redis_prefix,
    )
    sim_state.add_fault(Fault(kind="latency", image_id=panorama, seconds=1.5, times=1))  # cut before it is sent
    url = f"/v1/orders/{order_id}/images"
    with service.client() as client:
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            etag, got = response.headers["etag"], bytearray()
            for chunk in response.iter_raw(4096):
                got += chunk
                if len(got) >= 500:
                    break
        prefix = bytes(got[:500])
        fill(small_disk)
        rest = client.get(url, headers={"Range": f"bytes={len(prefix)}-", "If-Range": etag})
        whole = client.get(url, headers={"Range": "bytes=0-", "If-Range": etag})
    assert rest.status_code == 206, rest.text
    assert rest.headers["x-downloaded"] == "4" and rest.headers["x-failed"] == "1"
    members = check_zip(prefix + rest.content)
    assert sorted(m for m in members if m.endswith(".jpg")) == [f"room-{n}.jpg" for n in range(4)]
    report = members["_download_report.txt"].decode()
    assert "panorama.jpg" in report, report
    # worded as a live batch words it: the same failure, the same words
    assert "Reason:  not stored: the service's disk is full" in report, report
    assert "Recover: Retry the batch later; the operator must free space in DATA_DIR" in report, report
    assert whole.status_code == 206 and whole.content == prefix + rest.content
