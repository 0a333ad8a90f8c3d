"""The scaled-out mode when Redis drops its connections or restarts, and when workers are restarted:
one `uvicorn app:app` instance and two `python -m app.worker` processes on a PRIVATE redis-server
(tests/support/redis_server.py) that the tests restart and whose clients they kill, against the simulator.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.servers import serve
from simulator import Fault, SeedImage, SimulatorState
from simulator import create_app as create_simulator
from tests.conftest import TEST_KEY, Sim
from tests.support.cluster import Api, Worker, node_env
from tests.support.redis_server import RedisServer, private_redis

pytestmark = pytest.mark.xdist_group("redis-restart")

LEASE_SECONDS = 5.0
"""Longer than a Redis restart plus the clients' retry window, and than the stalls of a loaded
two-core CI box: with 1.5 s a job's lease lapsed on two attempts in a row under load and the job
failed, which says nothing about Redis. Nothing here waits for a lease to lapse."""
PREFIX = "restart:"
SETTLE_SECONDS = 90.0
"""Every job submitted around the drops must be finished this long after the last one, far below the
300 s after which a queued job's message is sent again: only a queue that loses nothing passes."""


@dataclass
class Cluster:
    sim: Sim
    redis: RedisServer
    api: httpx.Client
    workers: list[Worker]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("restart")
    state = SimulatorState(api_keys={TEST_KEY})
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(private_redis(root))
        sim_url = stack.enter_context(serve(create_simulator(state)))
        node: dict[str, Any] = {
            "redis_url": server.url,
            "redis_key_prefix": PREFIX,
            "job_lease_seconds": LEASE_SECONDS,
            "autoenhance_api_key": TEST_KEY,
            "autoenhance_base_url": sim_url,
            "log_level": "WARNING",
            "log_json": False,
        }
        workers = []
        for n in range(2):
            (root / f"worker{n}").mkdir()
            workers.append(
                Worker(node_env(node | {"data_dir": root / f"worker{n}" / "data"}), root / f"worker{n}").start()
            )
        stack.callback(lambda: [w.stop() for w in workers])
        (root / "api").mkdir()
        api = Api(node_env(node | {"data_dir": root / "api" / "data", "job_workers_in_api": False}), root / "api")
        stack.callback(api.stop)
        api.start(timeout=150)  # beside busy parallel tests, five processes importing at once take a while
        client = stack.enter_context(httpx.Client(base_url=api.url, timeout=30))
        _wait_for_consumers(server, len(workers))
        yield Cluster(Sim(sim_url, state), server, client, workers)


def _wait_for_consumers(server: RedisServer, count: int) -> None:
    """Until `count` workers wait for messages (blocked in XREADGROUP): a worker process is slow to start
    beside busy parallel tests, and one that has not connected yet has no connection to lose."""
    deadline = time.monotonic() + 150
    while True:
        with server.client() as client:
            if int(client.info("clients")["blocked_clients"]) >= count:
                return
        assert time.monotonic() < deadline, f"fewer than {count} workers read the queue after 150 s"
        time.sleep(0.1)


def _seed(sim: Sim, name: str, *images: SeedImage) -> str:
    return str(sim.state.seed_order(name=name, images=list(images))["order_id"])


def _wait_all(
    client: httpx.Client, ids: list[str], until: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in ids:
            if job_id not in last or not until(last[job_id]):
                response = client.get(f"/jobs/{job_id}")
                assert response.status_code == 200, response.text
                last[job_id] = response.json()
        if all(until(status) for status in last.values()):
            return last
        pending = {i: s["status"] for i, s in last.items() if not until(s)}
        assert time.monotonic() < deadline, f"{len(pending)} of {len(ids)} jobs not finished: {pending}"
        time.sleep(0.1)


def _finished(status: dict[str, Any]) -> bool:
    return status["status"] in ("completed", "completed_with_errors", "failed")


def test_jobs_submitted_while_redis_drops_connections_and_restarts_all_complete(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Connections killed (CLIENT KILL) and a Redis restart while jobs are created, queued and run:
    no POST fails, no job fails, and every job completes within SETTLE_SECONDS."""
    cluster.sim.state.download_latency = 0.15  # jobs are running when the connections drop
    orders = [_seed(cluster.sim, f"Drop {n}", SeedImage(name=f"{n}.jpg", size=20_000)) for n in range(24)]
    answers: list[httpx.Response] = []
    killed = 0
    try:
        for n, order_id in enumerate(orders):
            if n % 4 == 3:
                killed += cluster.redis.kill_clients()  # every pooled and blocked connection of every process
            if n == 14:
                cluster.redis.restart()  # data kept, every connection gone, refused for a moment
            answers.append(cluster.api.post(f"/orders/{order_id}/jobs"))
        assert killed >= 5 * 3, killed  # each process had connections to lose
        assert [a.status_code for a in answers] == [202] * len(orders), [(a.status_code, a.text) for a in answers]
        ids = [a.json()["job_id"] for a in answers]
        done = _wait_all(cluster.api, ids, _finished, SETTLE_SECONDS)
    finally:
        cluster.sim.state.download_latency = 0.0
    outcomes = {(s["status"], s["downloaded"], s["error"]) for s in done.values()}
    assert outcomes == {("completed", 1, None)}, outcomes


def _runner_of(cluster: Cluster, job_id: str, attempt: int) -> Worker:
    """The worker process running `attempt` of the job, once its download is under way."""
    deadline = time.monotonic() + 30
    while True:
        with cluster.redis.client() as client:
            record = json.loads(client.get(f"{PREFIX}jobs:job:{job_id}") or "{}")
        if record.get("status") == "running" and record.get("attempt") == attempt:
            pid = int(record["runner"].rsplit(":", 1)[1])
            return next(w for w in cluster.workers if w.process is not None and w.process.pid == pid)
        assert time.monotonic() < deadline, f"attempt {attempt} never ran: {record}"
        time.sleep(0.05)


def test_a_rolling_restart_hands_a_job_back_twice_without_failing_it(cluster: Cluster) -> None:
    """JOB_MAX_ATTEMPTS is 2: two workers stopped with SIGTERM while running the same job (a rolling
    restart) hand it back twice, and the third run completes it; hand-backs are not failed attempts."""
    order_id = _seed(cluster.sim, "Rolling", SeedImage(name="slow.jpg", size=40_000))
    image_id = cluster.sim.state.order_json(cluster.sim.state.get_order(order_id))["images"][0]["image_id"]
    cluster.sim.state.add_fault(Fault(kind="latency", image_id=str(image_id), seconds=8, times=2))
    created = cluster.api.post(f"/orders/{order_id}/jobs")
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    for attempt in (1, 2):
        worker = _runner_of(cluster, job_id, attempt)
        time.sleep(0.3)  # its download is held upstream
        worker.stop()  # SIGTERM: the job goes back to the queue at once
        assert worker.process is not None and worker.process.returncode == 0, worker.output()
        worker.start()  # the restarted worker takes its share again
    done = _wait_all(cluster.api, [job_id], _finished, SETTLE_SECONDS)[job_id]  # the workers restart first
    assert (done["status"], done["downloaded"], done["error"], done["attempt"]) == ("completed", 1, None, 3), done
