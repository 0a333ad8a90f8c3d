"""Several processes on one box, one DATA_DIR, no Redis: what `python -m app serve --workers N` runs.

Two `python -m app serve` processes on their own ports share one data_dir, so each test can choose
which process it talks to: a job made on one is polled and downloaded through the other, a stream
cut on one is resumed on the other, an archive one built is the other's cache hit, identical work
started on both runs once, a webhook is sent once, and a process killed mid-job has its job taken
over by the one left. Last, `serve --workers 2` itself: two processes behind one port.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.servers import serve
from simulator import Fault, SeedImage, SimulatorState
from simulator import create_app as create_simulator
from tests.conftest import TEST_KEY, Sim
from tests.support.cluster import Served, node_env
from tests.support.jobs_helpers import image_id, poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, Receiver
from tests.support.zipcheck import check_zip

pytestmark = [pytest.mark.xdist_group("box"), pytest.mark.heavy]

LEASE_SECONDS = 1.5


@dataclass
class Box:
    sim: Sim
    data_dir: Path
    nodes: list[Served]
    clients: list[httpx.Client]
    hooks: Receiver
    hook_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    root = tmp_path_factory.mktemp("box")
    state = SimulatorState(api_keys={TEST_KEY})
    hooks = Receiver()
    with contextlib.ExitStack() as stack:
        sim_url = stack.enter_context(serve(create_simulator(state)))
        hook_url = stack.enter_context(serve(hooks.app()))
        data_dir = root / "data"
        env = node_env(
            FAST_RETRIES
            | {
                "autoenhance_api_key": TEST_KEY,
                "autoenhance_base_url": sim_url,
                "data_dir": data_dir,
                "job_lease_seconds": LEASE_SECONDS,
                "image_timeout_seconds": 30,
                "log_level": "WARNING",
                "log_json": False,
            }
        )
        nodes = []
        for n in range(2):
            (root / f"p{n}").mkdir()
            nodes.append(Served(env, root / f"p{n}").start())
        stack.callback(lambda: [node.stop() for node in nodes])
        clients = [stack.enter_context(httpx.Client(base_url=node.url, timeout=30)) for node in nodes]
        yield Box(Sim(sim_url, state), data_dir, nodes, clients, hooks, hook_url, env)


def _job(client: httpx.Client, order_id: str, **body: Any) -> str:
    response = client.post(f"/orders/{order_id}/jobs", json=body or None)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _done(status: dict[str, Any]) -> bool:
    return status["status"] not in ("queued", "running")


def test_a_job_made_on_one_process_is_polled_and_downloaded_on_the_other(box: Box) -> None:
    order_id = seed(box.sim, SeedImage(name="a.jpg", size=90_000), SeedImage(name="b.jpg", size=70_000))
    job_id = _job(box.clients[0], order_id)
    status = poll(box.clients[1], job_id, _done)
    assert status["status"] == "completed", status
    download = box.clients[1].get(f"/jobs/{job_id}/download")
    assert download.status_code == 200
    assert {"a.jpg", "b.jpg"} <= set(check_zip(download.content))
    ranged = box.clients[0].get(f"/jobs/{job_id}/download", headers={"Range": "bytes=100-"})
    assert ranged.status_code == 206 and ranged.content == download.content[100:]


def test_an_archive_built_by_one_process_is_the_others_cache_hit(box: Box) -> None:
    order_id = seed(box.sim, SeedImage(name="c.jpg", size=60_000), SeedImage(name="d.jpg", size=50_000))
    first = box.clients[0].get(f"/orders/{order_id}/images")
    assert first.status_code == 200
    box.sim.state.reset_stats()
    second = box.clients[1].get(f"/orders/{order_id}/images")
    assert second.status_code == 200 and second.content == first.content
    assert box.sim.state.stats["enhanced"] == 0  # served from the shared cache: no image fetched again


def test_identical_work_started_on_both_processes_runs_once(box: Box) -> None:
    images = [SeedImage(name=f"f{n}.jpg", size=40_000) for n in range(4)]
    order_id = seed(box.sim, *images)
    box.sim.state.download_latency = 0.4  # the two requests overlap
    box.sim.state.reset_stats()
    results: list[httpx.Response] = []
    try:
        threads = [
            threading.Thread(target=lambda c=client: results.append(c.get(f"/orders/{order_id}/images")))
            for client in box.clients
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.1)  # the first claims the flight before the second asks
        for thread in threads:
            thread.join(60)
    finally:
        box.sim.state.download_latency = 0.0
    assert [r.status_code for r in results] == [200, 200]
    assert results[0].content == results[1].content
    assert box.sim.state.stats["enhanced"] == len(images)  # one upstream fetch per image, not two


def test_a_stream_cut_on_one_process_is_resumed_on_the_other(box: Box) -> None:
    images = [SeedImage(name=f"r{n}.jpg", size=150_000) for n in range(6)]
    order_id = seed(box.sim, *images)
    url = f"/orders/{order_id}/images"
    with box.clients[0].stream("GET", url, params={"quality": 88}) as response:  # options no other test caches
        assert response.status_code == 200
        etag = response.headers["etag"]
        head = b""
        for chunk in response.iter_bytes():
            head += chunk
            if len(head) > 300_000:
                break
    rest = box.clients[1].get(url, params={"quality": 88}, headers={"Range": f"bytes={len(head)}-", "If-Range": etag})
    assert rest.status_code == 206, rest.text
    members = check_zip(head + rest.content)
    assert {f"r{n}.jpg" for n in range(6)} <= set(members)


def test_a_webhook_is_sent_once_though_both_processes_dispatch(box: Box) -> None:
    order_id = seed(box.sim, SeedImage(name="w.jpg", size=30_000))
    before = len(box.hooks.received)
    job_id = _job(box.clients[1], order_id, callback_url=f"{box.hook_url}/box")
    poll(box.clients[0], job_id, _done)
    got = box.hooks.wait_for(before + 1, path="/box")
    time.sleep(2 * LEASE_SECONDS)  # a second sender would have sent by now
    mine = [r for r in box.hooks.received if r.path == "/box" and r.verified()["job_id"] == job_id]
    assert len(mine) == 1, got


def test_a_killed_processs_job_is_taken_over_by_the_other(box: Box) -> None:
    order_id = seed(box.sim, SeedImage(name="fast.jpg", size=80_000), SeedImage(name="slow.jpg", size=80_000))
    box.sim.state.add_fault(
        Fault(kind="latency", image_id=image_id(box.sim, order_id, "slow.jpg"), seconds=30, times=1)
    )
    victim, survivor = box.nodes[0], box.clients[1]
    job_id = _job(box.clients[0], order_id)
    poll(survivor, job_id, lambda s: s["status"] == "running" and s["downloaded"] >= 1)
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    status = poll(survivor, job_id, _done, timeout=30)
    assert status["status"] == "completed", status
    assert box.nodes[1].process is not None
    with sqlite3.connect(box.data_dir / "jobs.sqlite3") as db:
        attempt, runner = db.execute("SELECT attempt, runner FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    assert (attempt, runner.rpartition(":")[2]) == (2, str(box.nodes[1].process.pid))  # the survivor ran it again
    members = check_zip(survivor.get(f"/jobs/{job_id}/download").content)
    assert {"fast.jpg", "slow.jpg"} <= set(members)
    victim.start()  # the module's other tests keep two processes
    box.clients[0] = httpx.Client(base_url=victim.url, timeout=30)


def test_serve_workers_runs_two_processes_behind_one_port(box: Box, tmp_path: Path) -> None:
    env = dict(box.env) | {"DATA_DIR": str(tmp_path / "data")}
    node = Served(env, tmp_path, workers=2).start()
    try:
        order_id = seed(box.sim, SeedImage(name="p.jpg", size=40_000))
        spool = tmp_path / "data" / "spool"
        deadline = time.monotonic() + 60
        while len(list(spool.iterdir()) if spool.is_dir() else []) < 2:  # the second process may start later
            assert time.monotonic() < deadline, "the second process never started"
            time.sleep(0.1)
        pids = {int(p.name) for p in spool.iterdir()}
        assert node.process is not None and node.process.pid not in pids  # the supervisor serves nothing itself
        for _ in range(20):
            with httpx.Client(base_url=node.url, timeout=30) as fresh:  # a new connection each time
                assert fresh.get("/health").status_code == 200
        with httpx.Client(base_url=node.url, timeout=30) as client:
            job_id = _job(client, order_id)
            status = poll(client, job_id, _done)
            assert status["status"] == "completed", status
            with zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/download").content)) as archive:
                assert archive.testzip() is None and "p.jpg" in archive.namelist()
    finally:
        node.stop()
    assert "database is locked" not in node.output()
