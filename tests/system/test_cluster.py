"""The scaled-out mode, proven on real engines: 2 `uvicorn app:app` + 2 `python -m app.worker` processes
sharing this machine's Redis (a fresh key prefix) and a local S3 (moto_server), against the simulator.

One module-scoped cluster serves every test here, so the suite pays its start-up once.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from app.config import Settings
from harness.servers import serve
from simulator import Fault, SeedImage, SimulatorState
from simulator import create_app as create_simulator
from tests.conftest import TEST_KEY, Sim
from tests.support.cluster import ROOT, S3, Api, Worker, moto_s3, node_env, redis_or_skip, redis_prefix
from tests.support.webhook_receiver import FAST_RETRIES, Receiver

# one cluster of processes for the whole module: its tests stay on one parallel worker
pytestmark = pytest.mark.xdist_group("cluster")

LEASE_SECONDS = 1.5
GLOBAL_DOWNLOADS = 3


@dataclass
class Cluster:
    sim: Sim
    s3: S3
    prefix: str
    apis: list[httpx.Client]
    workers: list[Worker]
    hooks: Receiver
    hook_url: str
    redis: redis.Redis


def _seed(sim: Sim, *images: SeedImage, name: str = "Cluster Street") -> str:
    return str(sim.state.seed_order(name=name, images=list(images))["order_id"])


def _image_id(sim: Sim, order_id: str, name: str) -> str:
    order = sim.state.order_json(sim.state.get_order(order_id))
    return next(str(i["image_id"]) for i in order["images"] if i["image_name"] == name)


def _poll(
    client: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if until(status):
            return status
        assert time.monotonic() < deadline, f"job never reached the expected state: {status}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = redis_or_skip()
    root = tmp_path_factory.mktemp("cluster")
    state = SimulatorState(api_keys={TEST_KEY})
    hooks = Receiver()
    with contextlib.ExitStack() as stack:
        prefix = stack.enter_context(redis_prefix())
        s3 = stack.enter_context(moto_s3(root))
        sim_url = stack.enter_context(serve(create_simulator(state)))
        hook_url = stack.enter_context(serve(hooks.app()))
        shared: dict[str, Any] = (
            FAST_RETRIES
            | s3.settings()
            | {
                "redis_url": redis_url,
                "redis_key_prefix": prefix,
                "job_lease_seconds": LEASE_SECONDS,
                "max_global_downloads": GLOBAL_DOWNLOADS,
            }
        )
        # what every process of the cluster shares, then what each kind adds
        node = shared | {
            "autoenhance_api_key": TEST_KEY,
            "autoenhance_base_url": sim_url,
            "log_level": "WARNING",
            "log_json": False,
        }
        workers = []
        for n in range(2):
            (root / f"worker{n}").mkdir()
            env = node_env(node | {"data_dir": root / f"worker{n}" / "data"})
            workers.append(Worker(env, root / f"worker{n}").start())
        stack.callback(lambda: [w.stop() for w in workers])
        apis = []
        for n in range(2):
            (root / f"api{n}").mkdir()
            env = node_env(
                node
                | {
                    "data_dir": root / f"api{n}" / "data",
                    "job_workers_in_api": False,  # jobs run on the workers only
                    "image_timeout_seconds": 10,
                    "order_timeout_seconds": 10,
                    "retry_attempts": 3,
                }
            )
            api = Api(env, root / f"api{n}")
            stack.callback(api.stop)
            api.start()
            apis.append(stack.enter_context(httpx.Client(base_url=api.url, timeout=30)))
        client = stack.enter_context(redis.Redis.from_url(redis_url, decode_responses=True))
        yield Cluster(Sim(sim_url, state), s3, prefix, apis, workers, hooks, hook_url, client)


def test_a_job_made_on_one_instance_is_polled_and_downloaded_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.apis
    order_id = _seed(cluster.sim, SeedImage(name="one.jpg", size=150_000), SeedImage(name="two.jpg", size=90_000))
    created = a.post(f"/orders/{order_id}/jobs")
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    done = _poll(b, job_id, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
    assert (done["status"], done["downloaded"], done["failed"], done["total"]) == ("completed", 2, 0, 2)

    redirect = b.get(f"/jobs/{job_id}/download")  # not followed: the archive is not on either instance
    assert redirect.status_code == 307, redirect.text
    location = redirect.headers["location"]
    assert location.startswith(f"{cluster.s3.endpoint}/{cluster.s3.bucket}/jobs/{job_id}.zip?")
    assert "X-Amz-Signature=" in location
    archive = httpx.get(location)
    assert archive.status_code == 200 and len(archive.content) == done["bytes"]
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(n for n in names if not n.startswith("_")) == ["one.jpg", "two.jpg"]
    ranged = httpx.get(location, headers={"Range": "bytes=0-3"})  # resuming works against S3 itself
    assert ranged.status_code == 206 and ranged.content == b"PK\x03\x04"
    assert httpx.get(location.split("?")[0]).status_code == 403  # the object is private: only the signed URL reads it


def test_a_worker_killed_mid_job_hands_the_job_on_and_the_webhook_comes_once(cluster: Cluster) -> None:
    a, b = cluster.apis
    order_id = _seed(cluster.sim, SeedImage(name="quick.jpg", size=60_000), SeedImage(name="stuck.jpg"))
    stuck = _image_id(cluster.sim, order_id, "stuck.jpg")
    cluster.sim.state.add_fault(Fault(kind="latency", image_id=stuck, seconds=8, times=1))
    created = a.post(f"/orders/{order_id}/jobs", json={"callback_url": f"{cluster.hook_url}/kill"})
    job_id = created.json()["job_id"]
    running = _poll(b, job_id, lambda s: s["status"] == "running" and s["downloaded"] == 1)
    assert running["failed"] == 0
    record = json.loads(cluster.redis.get(f"{cluster.prefix}jobs:job:{job_id}"))
    pid = int(record["runner"].rsplit(":", 1)[1])
    victim = next(w for w in cluster.workers if w.process is not None and w.process.pid == pid)
    victim.kill()  # SIGKILL: no shutdown hook runs, its lease just stops being renewed
    killed_at = time.monotonic()
    done = _poll(a, job_id, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"), timeout=30)
    assert time.monotonic() - killed_at < 15  # lease 1.5 s: the sweep catches it within a few seconds
    victim.start()
    after = json.loads(cluster.redis.get(f"{cluster.prefix}jobs:job:{job_id}"))
    assert after["attempt"] == 2 and after["runner"] != record["runner"]
    assert (done["status"], done["downloaded"], done["total"], done["attempt"]) == ("completed", 2, 2, 2), done
    cluster.hooks.wait_for(1, path="/kill", timeout=15)
    time.sleep(1)  # a duplicate would arrive within the fast retry schedule
    hooks = [r for r in cluster.hooks.received if r.path == "/kill"]
    assert len(hooks) == 1, hooks
    payload = hooks[0].verified()
    assert (payload["job_id"], payload["status"]) == (job_id, "completed")
    assert hooks[0].headers["webhook-id"] == f"msg_job_{job_id}"


def test_the_download_budget_holds_across_instances(cluster: Cluster) -> None:
    """Each instance alone may run MAX_GLOBAL_DOWNLOADS downloads; together they still run at most that many."""
    orders = [
        _seed(cluster.sim, *(SeedImage(name=f"{n}.jpg", size=20_000) for n in range(6)), name=f"Budget {k}")
        for k in range(2)
    ]
    cluster.sim.state.download_latency = 0.15
    cluster.sim.state.reset_stats()
    try:
        with ThreadPoolExecutor(2) as pool:
            responses = list(
                pool.map(lambda pair: pair[0].get(f"/orders/{pair[1]}/images"), zip(cluster.apis, orders, strict=True))
            )
    finally:
        cluster.sim.state.download_latency = 0.0
    for response in responses:
        assert response.status_code == 200
        assert len([n for n in zipfile.ZipFile(io.BytesIO(response.content)).namelist() if n.endswith(".jpg")]) == 6
    assert cluster.sim.state.stats["peak_concurrent_downloads"] == GLOBAL_DOWNLOADS  # saturated, never over
    assert cluster.sim.state.stats["enhanced"] >= 12


def test_identical_jobs_on_two_instances_fetch_upstream_once(cluster: Cluster) -> None:
    a, b = cluster.apis
    order_id = _seed(cluster.sim, *(SeedImage(name=f"{n}.jpg", size=30_000) for n in range(4)), name="Twice")
    cluster.sim.state.download_latency = 0.2  # both jobs are in flight together
    cluster.sim.state.reset_stats()
    try:
        with ThreadPoolExecutor(2) as pool:
            created = list(pool.map(lambda api: api.post(f"/orders/{order_id}/jobs"), (a, b)))
        ids = [r.json()["job_id"] for r in created]
        done = [
            _poll(api, i, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
            for api, i in zip((b, a), ids, strict=True)
        ]
    finally:
        cluster.sim.state.download_latency = 0.0
    assert {(d["status"], d["downloaded"], d["failed"]) for d in done} == {("completed", 4, 0)}
    assert cluster.sim.state.stats["enhanced"] == 4  # one fetch per image across both instances and workers
    archives = []
    for api, job_id in zip((a, b), ids, strict=True):
        redirect = api.get(f"/jobs/{job_id}/download")
        assert redirect.status_code == 307
        assert f"/jobs/{job_id}.zip?" in redirect.headers["location"]  # each job has its own object (a copy)
        archives.append(httpx.get(redirect.headers["location"]).content)
    assert archives[0] == archives[1] and len(archives[0]) == done[0]["bytes"]


def test_identical_streams_on_two_instances_fetch_once_through_the_shared_cache(cluster: Cluster) -> None:
    a, b = cluster.apis
    order_id = _seed(cluster.sim, *(SeedImage(name=f"{n}.jpg", size=30_000) for n in range(3)), name="Streamed")
    cluster.sim.state.download_latency = 0.2
    cluster.sim.state.reset_stats()
    try:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda api: api.get(f"/orders/{order_id}/images"), (a, b)))
    finally:
        cluster.sim.state.download_latency = 0.0
    assert [r.status_code for r in responses] == [200, 200]
    assert sorted(r.headers["x-cache"] for r in responses) == ["miss", "shared"]  # the follower read the leader's
    assert responses[0].content == responses[1].content
    assert cluster.sim.state.stats["enhanced"] == 3
    key = next(iter(cluster.redis.scan_iter(match=f"{cluster.prefix}cache:*")))
    assert 0 < cluster.redis.ttl(key) <= 3600  # the shared index expires with CACHE_TTL_SECONDS

    later = a.post(f"/orders/{order_id}/jobs")  # a job for the same archive copies it, fetching nothing
    done = _poll(b, later.json()["job_id"], lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
    assert (done["status"], done["downloaded"]) == ("completed", 3)
    assert cluster.sim.state.stats["enhanced"] == 3
    assert httpx.get(b.get(done["download_url"]).headers["location"]).content == responses[0].content


def test_render_blueprint_runs_web_worker_and_redis_with_known_settings() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    services = {s["type"]: s for s in blueprint["services"]}
    assert set(services) == {"web", "worker", "keyvalue"}
    assert services["web"]["startCommand"].startswith("python -m app serve ")  # with the server limits
    assert services["worker"]["startCommand"] == "python -m app.worker"
    assert services["keyvalue"]["maxmemoryPolicy"] == "noeviction"
    keys = {e["key"] for s in blueprint["services"] for e in s.get("envVars", []) if "key" in e}
    keys |= {e["key"] for g in blueprint["envVarGroups"] for e in g["envVars"]}
    known = {name.upper() for name in Settings.model_fields} | {"PYTHON_VERSION", "FORWARDED_ALLOW_IPS"}  # + uvicorn's
    assert keys <= known, keys - known  # no setting the service would silently ignore
    for service in (services["web"], services["worker"]):
        redis_url = next(e for e in service["envVars"] if e.get("key") == "REDIS_URL")
        assert redis_url["fromService"] == {
            "type": "keyvalue",
            "name": services["keyvalue"]["name"],
            "property": "connectionString",
        }


def test_the_worker_refuses_to_start_without_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.worker"],
        cwd=tmp_path,
        env=node_env({"log_level": "WARNING"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs REDIS_URL" in result.stderr


def test_a_worker_stopped_with_sigterm_hands_its_job_back_at_once(cluster: Cluster) -> None:
    a, b = cluster.apis
    order_id = _seed(cluster.sim, SeedImage(name="held.jpg", size=50_000), name="Handed back")
    held = _image_id(cluster.sim, order_id, "held.jpg")
    cluster.sim.state.add_fault(Fault(kind="latency", image_id=held, seconds=8, times=1))
    job_id = a.post(f"/orders/{order_id}/jobs").json()["job_id"]
    _poll(b, job_id, lambda s: s["status"] == "running")
    time.sleep(0.3)  # the download is under way, held upstream
    record = json.loads(cluster.redis.get(f"{cluster.prefix}jobs:job:{job_id}"))
    pid = int(record["runner"].rsplit(":", 1)[1])
    worker = next(w for w in cluster.workers if w.process is not None and w.process.pid == pid)
    worker.stop()  # SIGTERM
    assert worker.process is not None and worker.process.returncode == 0, worker.output()
    handed = json.loads(cluster.redis.get(f"{cluster.prefix}jobs:job:{job_id}"))
    assert handed["attempt"] == 2  # already on exit: handed back, not left for the lease to lapse
    assert handed["lease_until"] is None or handed["lease_until"] > record["lease_until"]
    done = _poll(b, job_id, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"), timeout=20)
    worker.start()
    assert (done["status"], done["downloaded"]) == ("completed", 1)
    after = json.loads(cluster.redis.get(f"{cluster.prefix}jobs:job:{job_id}"))
    assert after["attempt"] == 2 and after["runner"] != record["runner"]
