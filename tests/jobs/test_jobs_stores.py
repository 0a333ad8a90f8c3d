"""The job store contract, on SQLite and on real Redis, and the lease sweeper through the real service.

The conditional writes are what make a dead worker's job safe to run again: a runner presumed dead
that wakes up must not be able to overwrite its successor (its writes carry its attempt).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.core.models import BatchOptions, ImageFormat
from app.jobs import manager as jobs_manager
from app.jobs.records import Job, JobStatus
from app.jobs.redis_store import RedisJobStore
from app.jobs.sqlite_store import SqliteJobStore
from app.jobs.supervisor import WORKER_LOST_REASON
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cluster import REDIS_URL
from tests.support.webhook_receiver import FAST_RETRIES, Receiver


def job(job_id: str, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "job_id": job_id,
        "order_id": "o",
        "order_name": None,
        "status": JobStatus.queued,
        "options": BatchOptions(format=ImageFormat.jpeg, quality=None, preview=True, dev_mode=False),
        "total": 2,
        "created_at": time.time(),
    }
    return Job(**(values | fields))


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    if request.param == "sqlite":
        return lambda: SqliteJobStore.open(tmp_path / "jobs.sqlite3")
    redis_prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisJobStore.open(REDIS_URL, redis_prefix)


def test_conditional_writes_and_queries(open_store: Callable[[], Any]) -> None:
    async def scenario() -> None:
        store = await open_store()
        try:
            await store.insert(job("a", failures=()))
            assert await store.update("a", only_if=JobStatus.queued, only_attempt=1, status=JobStatus.running)
            assert not await store.update("a", only_if=JobStatus.queued, status=JobStatus.running)  # taken already
            # the sweeper hands the job to attempt 2; attempt 1 wakes up and tries to finish: refused
            assert await store.update("a", only_attempt=1, status=JobStatus.queued, attempt=2, lease_until=None)
            assert not await store.update("a", only_if=JobStatus.queued, only_attempt=1, status=JobStatus.completed)
            assert [j.job_id for j in await store.with_status(JobStatus.queued)] == ["a"]
            assert await store.with_status(JobStatus.running) == []
            failures = [{"image_id": "i", "name": "n", "reason": "r", "recovery": "x"}]
            assert await store.update(
                "a", only_attempt=2, status=JobStatus.completed, finished_at=100.0, failures=failures
            )
            done = await store.get("a")
            assert done is not None
            assert (done.status, done.attempt, done.failures, done.finished_at) == (
                JobStatus.completed,
                2,
                tuple(failures),
                100.0,
            )
            assert [j.job_id for j in await store.due_for_expiry(200.0)] == ["a"]
            assert await store.due_for_expiry(50.0) == []
            await store.update("a", expired_at=150.0)
            assert await store.due_for_expiry(200.0) == []
            assert await store.delete_finished_before(99.0) == []
            assert await store.delete_finished_before(101.0) == ["a"]
            assert await store.get("a") is None
            assert await store.with_status(JobStatus.completed) == []
            with pytest.raises(ValueError, match="unknown job fields"):
                await store.update("a", nonsense=1)
        finally:
            await store.close()

    asyncio.run(scenario())


async def _as_an_earlier_release_stored_it(store: Any, job_id: str) -> None:
    """Rewrite a finished record as a release before the webhook's words stored it: status `complete`."""
    if isinstance(store, SqliteJobStore):
        await store._db.execute("UPDATE jobs SET status = 'complete' WHERE job_id = ?", (job_id,))
        await store._db.commit()
        return
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    key = f"{store._prefix}job:{job_id}"
    with raw.pipeline() as pipe:
        pipe.set(key, json.dumps(json.loads(str(raw.get(key))) | {"status": "complete"}))
        pipe.smove(f"{store._prefix}status:completed", f"{store._prefix}status:complete", job_id)
        pipe.execute()
    raw.close()


def test_records_an_earlier_release_stored_as_complete_read_as_completed(open_store: Callable[[], Any]) -> None:
    """Job records outlive an upgrade: `complete` (the old word) loads, is found, counted, shared, cancelled."""

    async def plant() -> None:
        store = await open_store()
        try:
            await store.insert(job("old"))
            await store.update("old", status=JobStatus.completed, downloaded=2, finished_at=100.0)
            await _as_an_earlier_release_stored_it(store, "old")
        finally:
            await store.close()

    async def scenario() -> dict[str, int]:
        store = await open_store()  # SQLite: a database of the earlier release, opened by this one
        try:
            loaded = await store.get("old")
            assert loaded is not None and loaded.status is JobStatus.completed
            assert loaded.view(3600.0)["status"] == "completed"
            assert [j.job_id for j in await store.with_status(JobStatus.completed)] == ["old"]
            assert (await store.count_by_status()).get("completed") == 1
            assert await store.update("old", only_if=JobStatus.completed, shares=({"share_id": "s"},))
            assert await store.update("old", only_if=JobStatus.completed, status=JobStatus.cancelled)
            counts = await store.count_by_status()
            assert (counts.get("completed", 0), counts.get("cancelled")) == (0, 1)
            assert await store.delete_finished_before(200.0) == ["old"]
            counted: dict[str, int] = await store.count_by_status()
            return counted
        finally:
            await store.close()

    asyncio.run(plant())
    assert sum(asyncio.run(scenario()).values()) == 0


def test_redis_updates_racing_on_one_job_all_land(redis_prefix: str) -> None:
    """Optimistic transactions: 20 concurrent writers of different fields, none lost."""

    async def scenario() -> Job | None:
        store = await RedisJobStore.open(REDIS_URL, redis_prefix)
        try:
            await store.insert(job("r"))
            await asyncio.gather(*(store.update("r", **{("downloaded" if n % 2 else "failed"): n}) for n in range(20)))
            await asyncio.gather(store.update("r", order_name="x"), store.update("r", size=5))
            return await store.get("r")
        finally:
            await store.close()

    final = asyncio.run(scenario())
    assert final is not None and (final.order_name, final.size) == ("x", 5)


# -- the sweeper, through the real service ----------------------------------------------------------


def _plant_running_job(redis_prefix: str, order_id: str, attempt: int, callback: str | None = None) -> str:
    """A record as a worker SIGKILLed mid-job leaves it: running, its lease lapsed."""
    planted = job(
        f"planted-{attempt}-{time.monotonic_ns()}",
        order_id=order_id,
        status=JobStatus.running,
        attempt=attempt,
        started_at=time.time() - 60,
        lease_until=time.time() - 30,
        runner="gone-host:1",
        callback_url=callback,
    )

    async def insert() -> None:
        store = await RedisJobStore.open(REDIS_URL, redis_prefix)
        await store.insert(planted)
        await store.close()

    asyncio.run(insert())
    return planted.job_id


def _wait_final(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["status"] in ("completed", "completed_with_errors", "failed"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_a_lapsed_lease_runs_the_job_again_then_fails_it_with_the_reason(
    simulator: Sim, start_service: Callable[..., Service], redis_prefix: str
) -> None:
    order_id = str(simulator.state.seed_order(name="Swept", images=[SeedImage(name="a.jpg")])["order_id"])
    hooks = Receiver()
    with serve(hooks.app()) as hook_url:
        service = start_service(
            **FAST_RETRIES, redis_url=REDIS_URL, redis_key_prefix=redis_prefix, job_lease_seconds=1.0, job_max_attempts=2
        )
        retried = _plant_running_job(redis_prefix, order_id, attempt=1)
        exhausted = _plant_running_job(redis_prefix, order_id, attempt=2, callback=f"{hook_url}/h")
        with service.client() as client:
            again = _wait_final(client, retried)
            assert (again["status"], again["downloaded"]) == ("completed", 1)  # attempt 2 ran in this instance
            failed = _wait_final(client, exhausted)
            assert failed["status"] == "failed"
            assert failed["error"] == f"{WORKER_LOST_REASON} (attempt 2 of 2); create a new job"
            assert client.get(f"/jobs/{exhausted}/download").status_code == 422
        callback = hooks.wait_for(1)[0]
        assert callback.headers["webhook-id"] == f"msg_job_{exhausted}"
        assert (callback.verified()["status"], callback.verified()["job_id"]) == ("failed", exhausted)
    record = redis.Redis.from_url(REDIS_URL, decode_responses=True).get(f"{redis_prefix}jobs:job:{retried}")
    assert record is not None and '"attempt": 2' in record


def test_the_shared_queue_has_a_flood_guard(
    simulator: Sim, start_service: Callable[..., Service], redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REDIS_URL the cap counts queued jobs of every instance (here: no worker consumes them)."""
    monkeypatch.setattr(jobs_manager, "MAX_SHARED_QUEUED_JOBS", 2)
    order_id = str(simulator.state.seed_order(name="Flood", images=[SeedImage(name="a.jpg")])["order_id"])
    service = start_service(redis_url=REDIS_URL, redis_key_prefix=redis_prefix, job_workers_in_api=False)
    with service.client() as client:
        accepted = [client.post(f"/orders/{order_id}/jobs") for _ in range(2)]
        assert [r.status_code for r in accepted] == [202, 202]
        assert [client.get(r.headers["location"]).json()["status"] for r in accepted] == ["queued", "queued"]
        refused = client.post(f"/orders/{order_id}/jobs")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        assert "Too many jobs" in refused.json()["detail"]
    assert redis.Redis.from_url(REDIS_URL).xlen(f"{redis_prefix}jobs:stream") == 2  # the two messages wait in Redis


def test_a_queued_job_whose_message_was_lost_is_sent_again(
    simulator: Sim, start_service: Callable[..., Service], redis_prefix: str
) -> None:
    """A worker killed between popping a message and claiming its job: the record is queued, the queue
    empty. The sweeper sends the message again once the record's resend deadline passed."""
    order_id = str(simulator.state.seed_order(name="Lost", images=[SeedImage(name="a.jpg")])["order_id"])
    lost = job(f"lost-{time.monotonic_ns()}", order_id=order_id, lease_until=time.time() - 1)

    async def insert() -> None:
        store = await RedisJobStore.open(REDIS_URL, redis_prefix)
        await store.insert(lost)
        await store.close()

    asyncio.run(insert())
    service = start_service(redis_url=REDIS_URL, redis_key_prefix=redis_prefix, job_lease_seconds=1.0)
    with service.client() as client:
        done = _wait_final(client, lost.job_id)
    assert (done["status"], done["downloaded"], done["attempt"]) == ("completed", 1, 1)
