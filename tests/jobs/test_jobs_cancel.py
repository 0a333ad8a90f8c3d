"""DELETE /jobs/{id} over real HTTP: a running job stops, its slot frees, its partial file goes, its
webhook says `cancelled`; a finished job's archive is deleted; the same on the Redis store, with the
run in another process's runner (it notices at its heartbeat)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import app.jobs.runner as jobs_runner
from simulator import Fault, SeedImage
from tests.conftest import Service, Sim
from tests.support.cluster import REDIS_URL
from tests.support.jobs_helpers import image_id, poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, serving


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _slow_order(sim: Sim, name: str = "12 Oak Street") -> str:
    """An order whose first photo comes at once (so a `.part` exists) and whose second hangs 30 s."""
    order_id = seed(sim, SeedImage(name="a.jpg", size=400_000), SeedImage(name="slow.jpg"), name=name)
    sim.state.add_fault(Fault(kind="latency", image_id=image_id(sim, order_id, "slow.jpg"), seconds=30))
    return order_id


def _parts(jobs_dir: Path) -> list[Path]:
    return sorted(jobs_dir.glob("*.zip.part"))


def test_cancelling_a_running_job_stops_it_frees_its_slot_and_says_so_in_its_webhook(
    simulator: Sim, start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_runner, "MAX_RUNNING_JOBS", 1)  # one slot: the next job runs only once it frees
    slow = _slow_order(simulator)
    quick = seed(simulator, SeedImage(name="q.jpg"), name="Quick")
    with serving() as hooks:
        service = start_service(**FAST_RETRIES)
        with service.client() as client:
            created = client.post(f"/orders/{slow}/jobs", json={"callback_url": f"{hooks.url}/done"})
            assert created.status_code == 202, created.text
            job_id = created.json()["job_id"]
            poll(client, job_id, lambda s: s["downloaded"] == 1)
            _wait_for(lambda: len(_parts(service.settings.jobs_dir)) == 1, "the running job's .part never appeared")
            waiting = client.post(f"/orders/{quick}/jobs").json()["job_id"]
            assert client.get(f"/jobs/{waiting}").json()["status"] == "queued"  # the one slot is taken

            started = time.monotonic()
            cancelled = client.delete(f"/jobs/{job_id}")
            assert cancelled.status_code == 200, cancelled.text
            body = cancelled.json()
            assert body["status"] == "cancelled" and body["finished_at"] and "cancelled" in body["error"]
            assert time.monotonic() - started < 10  # not the 30 s the slow photo would have taken
            assert not list(service.settings.jobs_dir.glob(f"{job_id}.*.zip.part"))  # (the next job may have one)
            assert not (service.settings.jobs_dir / f"{job_id}.zip").exists()

            freed = poll(client, waiting, lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))
            assert (freed["status"], freed["downloaded"]) == ("completed", 1)

            assert client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"  # no runner settled over it
            gone = client.get(f"/jobs/{job_id}/download")
            assert gone.status_code == 410 and "cancelled" in gone.json()["detail"]
            again = client.delete(f"/jobs/{job_id}")
            assert again.status_code == 200 and again.json()["status"] == "cancelled"
        [callback] = hooks.wait_for(1)
        payload = callback.verified()
        assert (payload["event"], payload["status"], payload["job_id"]) == ("job.cancelled", "cancelled", job_id)
        assert payload["download_url"] is None and "cancelled" in payload["error"]


def test_cancelling_a_queued_job_means_it_never_runs(
    simulator: Sim, start_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_runner, "MAX_RUNNING_JOBS", 1)
    slow = _slow_order(simulator)
    other = seed(simulator, SeedImage(name="q.jpg"), name="Other")
    service = start_service()
    with service.client() as client:
        blocker = client.post(f"/orders/{slow}/jobs").json()["job_id"]
        poll(client, blocker, lambda s: s["status"] == "running")
        queued = client.post(f"/orders/{other}/jobs").json()["job_id"]
        assert client.delete(f"/jobs/{queued}").json()["status"] == "cancelled"
        assert client.delete(f"/jobs/{blocker}").json()["status"] == "cancelled"  # frees the slot
        # a job created after `queued` waits behind it for the one slot: once it is done, `queued`'s
        # message has had its turn, and must have been skipped
        behind = client.post(f"/orders/{other}/jobs").json()["job_id"]
        assert poll(client, behind, lambda s: s["status"] == "completed")["downloaded"] == 1
        status = client.get(f"/jobs/{queued}").json()
        assert (status["status"], status["started_at"], status["downloaded"]) == ("cancelled", None, 0)


def test_cancelling_a_finished_job_deletes_its_archive(simulator: Sim, service: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with service.client() as client:
        job_id = client.post(f"/orders/{order_id}/jobs").json()["job_id"]
        poll(client, job_id, lambda s: s["status"] == "completed")
        result = service.settings.jobs_dir / f"{job_id}.zip"
        assert result.is_file() and client.get(f"/jobs/{job_id}/download").status_code == 200
        cancelled = client.delete(f"/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["expired"] is True and cancelled.json()["downloaded"] == 1
        assert not result.exists()
        assert client.get(f"/jobs/{job_id}/download").status_code == 410


def test_cancel_follows_the_job_routes_key_rule_and_unknown_jobs_are_404(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    service = start_service(service_api_key="s3cret-key-for-tests")
    with service.client() as anonymous, service.client(headers={"X-API-Key": "s3cret-key-for-tests"}) as client:
        job_id = client.post(f"/orders/{order_id}/jobs").json()["job_id"]
        refused = anonymous.delete(f"/jobs/{job_id}")
        assert refused.status_code == 401
        assert client.get(f"/jobs/{job_id}").json()["status"] != "cancelled"
        assert client.delete("/jobs/00000000-0000-4000-8000-000000000000").status_code == 404
        assert client.delete(f"/jobs/{job_id}").status_code == 200


def test_with_redis_a_cancel_made_by_one_instance_stops_the_run_in_another(
    simulator: Sim, start_service: Callable[..., Service], redis_prefix: str, tmp_path: Path
) -> None:
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix, **FAST_RETRIES}
    slow = _slow_order(simulator)
    with serving() as hooks:
        front = start_service(data_dir=tmp_path / "front", job_workers_in_api=False, **shared)
        worker = start_service(data_dir=tmp_path / "worker", job_workers_in_api=True, **shared)
        with front.client() as client:
            created = client.post(f"/orders/{slow}/jobs", json={"callback_url": f"{hooks.url}/done"})
            job_id = created.json()["job_id"]
            poll(client, job_id, lambda s: s["downloaded"] == 1)
            _wait_for(lambda: len(_parts(worker.settings.jobs_dir)) == 1, "the worker's .part never appeared")
            assert client.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
            # the worker's run notices at its next heartbeat (half a second) and removes its partial file
            _wait_for(lambda: _parts(worker.settings.jobs_dir) == [], "the worker kept its .part")
            quick = seed(simulator, SeedImage(name="q.jpg"), name="Quick")
            after = client.post(f"/orders/{quick}/jobs").json()["job_id"]
            assert poll(client, after, lambda s: s["status"] == "completed")["downloaded"] == 1
            assert client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
            assert client.get(f"/jobs/{job_id}/download").status_code == 410
        payload = hooks.wait_for(1)[0].verified()
        assert (payload["event"], payload["status"]) == ("job.cancelled", "cancelled")
    with httpx.Client(base_url=worker.url) as probe:  # the worker's own view agrees
        assert probe.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
