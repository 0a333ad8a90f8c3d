"""A damaged job database: moved aside and said so, or a failed start that exits (never a hung process)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import create_app
from harness.servers import free_port, serve
from simulator import SeedImage
from tests.conftest import Sim, service_settings

ROOT = Path(__file__).resolve().parents[2]


def _run_a_job(sim: Sim, data_dir: Path) -> str:
    """Serve, run one job to the end, stop: leaves a real jobs.sqlite3 with that job in it."""
    order = sim.state.seed_order(images=[SeedImage(name="a.jpg", size=2000)])
    with serve(create_app(service_settings(sim.url, data_dir))) as url, httpx.Client(base_url=url) as client:
        job = client.post(f"/v1/orders/{order['order_id']}/jobs").json()
        deadline = time.monotonic() + 15
        while client.get(job["status_url"]).json()["status"] not in ("completed", "completed_with_errors", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    return str(job["job_id"])


def _start_and_use(sim: Sim, data_dir: Path) -> tuple[int, int]:
    """Start on `data_dir`; the status of a new job's creation and of /health."""
    order = sim.state.seed_order(images=[SeedImage(name="b.jpg", size=2000)])
    with serve(create_app(service_settings(sim.url, data_dir))) as url, httpx.Client(base_url=url) as client:
        return client.post(f"/v1/orders/{order['order_id']}/jobs").status_code, client.get("/health").status_code


def _corrupt_page(path: Path, page: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as raw:
        raw.seek(page_size * (page - 1))
        raw.write(b"\xa5" * page_size)


@pytest.mark.parametrize("damage", ["not a database", "malformed page"])
def test_a_corrupt_job_database_is_moved_aside_and_said_so(
    simulator: Sim, tmp_path: Path, capfd: pytest.CaptureFixture[str], damage: str
) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "jobs.sqlite3"
    if damage == "not a database":
        data_dir.mkdir()
        db.write_bytes(b"this is not a database, whatever its name says\n" * 200)
    else:
        _run_a_job(simulator, data_dir)
        _corrupt_page(db, 2)
    damaged = db.read_bytes()
    capfd.readouterr()
    assert _start_and_use(simulator, data_dir) == (202, 200)  # the service runs, on a new database
    log = capfd.readouterr().err
    assert "is corrupt" in log and "moved aside to" in log, log[-2000:]
    [aside] = data_dir.glob("jobs.sqlite3.corrupt-*")
    assert aside.name.endswith("Z") and aside.read_bytes() == damaged  # kept as it was, for inspection


def test_a_truncated_job_database_is_reported_not_silently_replaced(
    simulator: Sim, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _run_a_job(simulator, data_dir)
    (data_dir / "jobs.sqlite3").write_bytes(b"")
    for sidecar in data_dir.glob("jobs.sqlite3-*"):
        sidecar.unlink()
    capfd.readouterr()
    assert _start_and_use(simulator, data_dir) == (202, 200)
    log = capfd.readouterr().err
    assert "jobs.sqlite3 is empty (0 bytes)" in log and "every record it held is lost" in log, log[-2000:]


def test_an_unopenable_job_database_exits_non_zero_at_once(tmp_path: Path) -> None:
    """Start-up fails: the process must exit so a supervisor restarts it, not hang on worker threads."""
    data_dir = tmp_path / "data"
    # a directory where the file should be: SQLite cannot open it. The webhook database, opened
    # before it, opens fine: its connection's worker thread is what kept the failed process alive
    (data_dir / "jobs.sqlite3").mkdir(parents=True)
    env = os.environ | {"DATA_DIR": str(data_dir), "AUTOENHANCE_API_KEY": "", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        code = process.wait(60)  # a hang is for ever; 60 s leaves room for a slow import beside busy workers
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        tail = process.stderr.read().decode()[-2000:] if process.stderr else ""
        pytest.fail(f"start-up failed and the process did not exit; its stderr ended:\n{tail}")
    finally:
        stderr = process.stderr.read().decode() if process.stderr else ""
    assert code != 0
    assert "unable to open database file" in stderr, stderr[-2000:]
