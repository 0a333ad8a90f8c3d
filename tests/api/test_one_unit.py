"""One unit: an archive of P photos in S sets holds P x S files, and every count says files, in the
stream's and HEAD's headers, a job's status, its download and its webhook fields, and the CLI's line.
A HEAD on an archive not built yet gives no length (not a length of 0)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cli_runner import run_process


def seed(sim: Sim, photos: int = 3) -> str:
    images = [SeedImage(name=f"room {n}.jpg", size=5000) for n in range(1, photos + 1)]
    return str(sim.state.seed_order(name="Two sets", images=images)["order_id"])


def test_head_and_get_count_files_and_head_gives_no_length_before_the_archive_exists(
    simulator: Sim, service: Service
) -> None:
    order_id = seed(simulator)
    path = f"/v1/orders/{order_id}/images?sets=full,web"
    with httpx.Client(base_url=service.url, timeout=60) as client:
        head = client.head(path)
        assert head.status_code == 200, head.text
        assert head.headers.get("x-total-images") == "6"  # 3 photos x 2 sets
        assert "content-length" not in head.headers  # not built yet: unknown, not 0
        got = client.get(path)
    assert got.status_code == 200 and got.headers["x-total-images"] == "6"  # HEAD agrees with GET


def test_a_job_counts_files_in_its_status_and_its_download(simulator: Sim, service: Service, tmp_path: Path) -> None:
    order_id = seed(simulator)
    with httpx.Client(base_url=service.url, timeout=60) as client:
        created = client.post(f"/v1/orders/{order_id}/jobs", params={"sets": "full,web"})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        deadline = time.monotonic() + 60
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("completed", "completed_with_errors", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["total"] == 6 and job["downloaded"] == 6 and job["failed"] == 0
        download = client.get(f"/v1/jobs/{job_id}/download")
        assert download.headers["x-total-images"] == "6" and download.headers["x-downloaded"] == "6"

    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "j.zip"), "--url", service.url,
                               "--job", "--sets", "full,web")
    assert code == 0, err
    assert "6 of 6 files" in err and "6 files: 3 photos x 2 sets (full, web)" in err
