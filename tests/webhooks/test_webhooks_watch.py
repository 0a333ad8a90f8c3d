"""Watching an order, end to end over loopback:
simulator (processes an upload, sends Autoenhance's webhook) -> POST /webhooks/autoenhance -> job ->
signed callback to a receiver that verifies it. Plus the receiver's auth and the failure paths.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from app.webhooks.watches import STARTING_GRACE_SECONDS, SqliteWatches
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim, service_settings
from tests.support.jobs_helpers import poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, Receiver, serving

AE_TOKEN = "autoenhance-webhook-test-token"
PHOTO = (Path(__file__).resolve().parents[2] / "simulator" / "sample_images" / "kitchen.jpg").read_bytes()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as hooks:
        yield hooks


@pytest.fixture
def watching(start_service: Callable[..., Service]) -> Service:
    return start_service(**(FAST_RETRIES | {"autoenhance_webhook_token": AE_TOKEN}))


def api(sim: Sim) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={"x-api-key": TEST_KEY}, timeout=10)


def new_order_awaiting_upload(sim: Sim) -> tuple[str, str]:
    """An order with one image created but not uploaded yet (status waiting): (order_id, upload_url)."""
    with api(sim) as c:
        order_id = c.post("/v3/orders", json={"name": "Watched house"}).json()["order_id"]
        image = c.post("/v3/images", json={"image_name": "kitchen.jpg", "order_id": order_id}).json()
    return order_id, image["upload_url"]


def watch(client: httpx.Client, order_id: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"/orders/{order_id}/watch", **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    return body


def event(service: Service, body: dict[str, Any], token: str | None = AE_TOKEN) -> httpx.Response:
    headers = {"Authorization": token} if token is not None else {}
    return httpx.post(f"{service.url}/webhooks/autoenhance", json=body, headers=headers)


def test_simulator_webhook_starts_the_watched_job_and_the_signed_callback_arrives(
    simulator: Sim, watching: Service, receiver: Receiver
) -> None:
    simulator.state.configure(processing_seconds=0.3)
    order_id, upload_url = new_order_awaiting_upload(simulator)
    with httpx.Client(base_url=simulator.url) as c:
        put = c.put("/_simulator/webhook", json={"url": f"{watching.url}/webhooks/autoenhance", "token": AE_TOKEN})
        assert put.status_code == 200, put.text
    with watching.client() as client:
        w = watch(client, order_id, params={"format": "webp"}, json={"callback_url": receiver.url + "/done"})
        assert (w["status"], w["job_id"], w["options"]["format"]) == ("watching", None, "webp")
        assert httpx.put(upload_url, content=PHOTO, headers={"Content-Type": "image/jpeg"}).status_code == 200
        payload = receiver.wait_for(1)[0].verified()
        assert (payload["event"], payload["status"], payload["order_id"]) == ("job.completed", "completed", order_id)
        assert (payload["total"], payload["downloaded"]) == (1, 1)
        started = client.get(w["status_url"]).json()
        assert (started["status"], started["job_id"]) == ("started", payload["job_id"])
        archive = client.get(payload["download_url"])
        assert archive.status_code == 200 and b"kitchen.webp" in archive.content
    sent = httpx.get(f"{simulator.url}/_simulator/webhook").json()["sent"]
    assert [e["event"] for e in sent] == ["webhook_updated", "image_processed"]
    assert sent[1]["order_is_processing"] is False and all(e["delivered"] for e in sent)


def test_a_watch_on_an_order_already_done_starts_at_once(simulator: Sim, watching: Service, receiver: Receiver) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with watching.client() as client:
        w = watch(client, order_id, headers={"callbackUrl": receiver.url + "/h"})
        assert w["status"] == "started" and w["job_id"]
        assert poll(client, w["job_id"], lambda s: s["status"] == "completed")["downloaded"] == 1
    assert receiver.wait_for(1)[0].verified()["job_id"] == w["job_id"]


def test_repeated_done_events_start_one_job_per_watch(simulator: Sim, watching: Service, receiver: Receiver) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", status="processing"))  # stays processing
    with watching.client() as client:
        first = watch(client, order_id, json={"callback_url": receiver.url + "/1"})
        second = watch(client, order_id)  # no callback: a job is still started
        assert first["status"] == second["status"] == "watching"
        busy = {"event": "image_processed", "order_id": order_id, "image_id": "x", "error": False}
        assert event(watching, busy | {"order_is_processing": True}).json() == {"received": True, "jobs_started": []}
        simulator.state.images[simulator.state.orders[order_id].image_ids[0]].status = "processed"
        done = event(watching, busy | {"order_is_processing": False})
        assert done.status_code == 200
        assert len(done.json()["jobs_started"]) == 2
        assert event(watching, busy | {"order_is_processing": False}).json()["jobs_started"] == []
        jobs = {client.get(f"/watches/{w['watch_id']}").json()["job_id"] for w in (first, second)}
        assert set(done.json()["jobs_started"]) == jobs
    receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.received) == 1  # only the watch with a callback_url calls back


def test_a_watched_order_that_vanished_reports_watch_failed(
    simulator: Sim, watching: Service, receiver: Receiver
) -> None:
    order_id, _ = new_order_awaiting_upload(simulator)
    with watching.client() as client:
        w = watch(client, order_id, json={"callback_url": receiver.url + "/h"})
        with api(simulator) as c:
            assert c.delete(f"/v3/orders/{order_id}").status_code == 204
        done = event(watching, {"event": "image_processed", "order_id": order_id, "order_is_processing": False})
        assert done.json() == {"received": True, "jobs_started": []}
        failed = client.get(w["status_url"]).json()
    assert failed["status"] == "failed" and "not found" in failed["error"].lower()
    payload = receiver.wait_for(1)[0].verified()
    assert (payload["event"], payload["status"], payload["job_id"], payload["watch_id"]) == (
        "watch.failed",
        "failed",
        None,
        w["watch_id"],
    )
    assert payload["error"] == failed["error"]


def test_autoenhance_webhook_checks_its_authentication_value(
    simulator: Sim, watching: Service, start_service: Callable[..., Service]
) -> None:
    body = {"event": "webhook_updated"}
    assert event(watching, body, token=None).status_code == 401
    wrong = event(watching, body, token="nope")
    assert wrong.status_code == 403 and wrong.json()["detail"] == "Wrong Authorization value"
    assert event(watching, body, token=f"Bearer {AE_TOKEN}").json() == {"received": True, "jobs_started": []}
    assert event(watching, body).status_code == 200
    assert event(watching, {"no_event": 1}).status_code == 422
    bad_id = event(watching, {"event": "image_processed", "order_id": "../x", "order_is_processing": False})
    assert bad_id.status_code == 422
    disabled = start_service(**FAST_RETRIES, data_dir=watching.settings.data_dir.parent / "other")
    off = event(disabled, body)
    assert off.status_code == 403 and "AUTOENHANCE_WEBHOOK_TOKEN" in off.json()["detail"]


def test_watch_refusals(simulator: Sim, watching: Service, start_service: Callable[..., Service]) -> None:
    unknown_order = "00000000-0000-4000-8000-000000000000"
    with watching.client() as client:
        assert client.post(f"/orders/{unknown_order}/watch").status_code == 404
        assert client.post("/orders/not-a-uuid/watch").status_code == 400
        bad = client.post(f"/orders/{seed(simulator, SeedImage(name='a.jpg'))}/watch", json={"callback_url": "x"})
        assert bad.status_code == 422 and "callback_url" in bad.json()["detail"]
        assert client.get("/watches/nope").status_code == 404
    no_token = start_service(**FAST_RETRIES, data_dir=watching.settings.data_dir.parent / "other")
    with no_token.client() as client:
        off = client.post(f"/orders/{seed(simulator, SeedImage(name='b.jpg'))}/watch")
    assert off.status_code == 503 and "AUTOENHANCE_WEBHOOK_TOKEN" in off.json()["detail"]


def test_simulator_webhook_control_validates(simulator: Sim) -> None:
    with httpx.Client(base_url=simulator.url) as c:
        assert c.put("/_simulator/webhook", json={"url": "ftp://x"}).status_code == 422
        assert c.put("/_simulator/webhook", json={"url": "http://x", "bogus": 1}).status_code == 422
        assert c.put("/_simulator/webhook", json={"url": "http://127.0.0.1:9/h"}).json()["webhook"] == {
            "url": "http://127.0.0.1:9/h",
            "token_set": False,
        }
        assert c.delete("/_simulator/webhook").status_code == 204
        assert c.get("/_simulator/webhook").json()["webhook"] is None


def test_a_watch_taken_by_a_process_that_died_is_started_by_the_next_one(
    simulator: Sim, tmp_path: Path, receiver: Receiver
) -> None:
    settings = service_settings(simulator.url, tmp_path / "data", **FAST_RETRIES, autoenhance_webhook_token=AE_TOKEN)
    order_id = seed(simulator, SeedImage(name="a.jpg", status="processing"))
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        w = watch(client, order_id, json={"callback_url": receiver.url + "/h"})

    async def die_after_taking() -> None:  # what a process killed between take and job creation leaves
        store = await SqliteWatches.open(settings.data_dir / "webhooks.sqlite3")
        try:
            assert len(await store.take(order_id, time.time() - 10 * STARTING_GRACE_SECONDS)) == 1
        finally:
            await store.close()

    asyncio.run(die_after_taking())
    simulator.state.images[simulator.state.orders[order_id].image_ids[0]].status = "processed"
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        payload = receiver.wait_for(1)[0].verified()
        started = client.get(w["status_url"]).json()
    assert (started["status"], started["job_id"]) == ("started", payload["job_id"])
    assert payload["status"] == "completed"
