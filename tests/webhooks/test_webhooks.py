"""Job callbacks end to end: the service runs a job against the simulator and POSTs the signed result to
a real loopback receiver; signatures are checked with the reference `standardwebhooks` library.

Retries, give-up, 410, redirects, timeouts, a restart in the middle of the retries, SSRF refusals at
creation and at delivery, the jobs-table migration and the OpenAPI `callbacks` declaration.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from app import create_app
from app.config import Settings
from app.core.network.addresses import METADATA_ADDRESSES, refusal
from app.jobs.records import JobStatus
from app.jobs.sqlite_store import SqliteJobStore
from app.jobs.supervisor import SHUTDOWN_REASON
from app.webhooks.dispatcher import RetryPolicy
from app.webhooks.outbox import Delivery, DeliveryStatus
from app.webhooks.signing import signed_headers, signer
from harness.servers import serve
from simulator import Fault, SeedImage
from tests.conftest import Service, Sim, service_settings
from tests.support.jobs_helpers import image_id, poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, SECRET, Receiver, serving


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as hooks:
        yield hooks


@pytest.fixture
def hooked(start_service: Callable[..., Service]) -> Service:
    return start_service(**FAST_RETRIES)


def create(client: httpx.Client, order_id: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"/orders/{order_id}/jobs", **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def webhook_state(client: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    status = poll(client, job_id, lambda s: s["webhook"] is not None and until(s["webhook"]))
    webhook: dict[str, Any] = status["webhook"]
    return webhook


# -- the payload and its signature -------------------------------------------------------------------


def test_a_completed_job_posts_one_signed_callback_with_an_absolute_download_link(
    simulator: Sim, hooked: Service, receiver: Receiver
) -> None:
    order_id = seed(simulator, SeedImage(name="kitchen.jpg"), SeedImage(name="garden.jpg"))
    with hooked.client() as client:
        job = create(client, order_id, params={"format": "png"}, json={"callback_url": f"{receiver.url}/hooks/a"})
        (call,) = receiver.wait_for(1)
        payload = call.verified()
        assert call.path == "/hooks/a"
        assert call.headers["content-type"] == "application/json"
        assert call.headers["webhook-id"] == f"msg_job_{job['job_id']}"
        assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 60
        assert call.headers["webhook-signature"].startswith("v1,")
        assert {k: payload[k] for k in ("event", "job_id", "order_id", "status", "total", "downloaded", "failed")} == {
            "event": "job.completed",
            "job_id": job["job_id"],
            "order_id": order_id,
            "status": "completed",
            "total": 2,
            "downloaded": 2,
            "failed": 0,
        }
        assert payload["errors"] == [] and payload["error"] is None
        assert 0 <= payload["duration_seconds"] < 30
        assert payload["download_url"] == f"{hooked.url}/v1/jobs/{job['job_id']}/download"
        assert payload["status_url"] == f"{hooked.url}/v1/jobs/{job['job_id']}"
        archive = httpx.get(payload["download_url"])  # the link works as given: absolute, on this service
        assert archive.status_code == 200
        assert {"garden.png", "kitchen.png"} <= set(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "delivered")
        assert state == {
            "callback_url": f"{receiver.url}/hooks/a",
            "webhook_id": f"msg_job_{job['job_id']}",
            "status": "delivered",
            "attempts": 1,
            "last_status_code": 200,
            "last_error": None,
        }
    time.sleep(0.3)
    assert len(receiver.received) == 1  # delivered once, not again


def test_the_callbackurl_header_works_and_partial_results_are_completed_with_errors(
    simulator: Sim, hooked: Service, receiver: Receiver
) -> None:
    order_id = seed(simulator, SeedImage(name="ok.jpg"), SeedImage(name="broken.jpg", status="error"))
    with hooked.client() as client:
        job = create(client, order_id, headers={"callbackUrl": f"{receiver.url}/from-header"})
    payload = receiver.wait_for(1)[0].verified()
    assert (payload["event"], payload["status"], payload["downloaded"], payload["failed"]) == (
        "job.completed",
        "completed_with_errors",
        1,
        1,
    )
    assert payload["job_id"] == job["job_id"]
    (error,) = payload["errors"]
    assert error.startswith("broken.jpg: ") and "error" in error


def test_a_poll_of_the_job_says_the_word_its_webhook_says(simulator: Sim, hooked: Service, receiver: Receiver) -> None:
    """One vocabulary: a client that polls and one that takes the webhook see the same status."""
    whole = seed(simulator, SeedImage(name="a.jpg"))
    partial = seed(simulator, SeedImage(name="ok.jpg"), SeedImage(name="broken.jpg", status="error"))
    with hooked.client() as client:
        ids = [create(client, o, json={"callback_url": f"{receiver.url}/h"})["job_id"] for o in (whole, partial)]
        said = {p["job_id"]: p["status"] for p in (call.verified() for call in receiver.wait_for(2))}
        polled = {i: client.get(f"/v1/jobs/{i}").json()["status"] for i in ids}
        unversioned = {i: client.get(f"/jobs/{i}").json()["status"] for i in ids}
        spec = client.get("/openapi.json").json()
    assert said == polled == unversioned == {ids[0]: "completed", ids[1]: "completed_with_errors"}
    words = spec["components"]["schemas"]["JobView"]["properties"]["status"]["enum"]
    assert words == ["queued", "running", "completed", "completed_with_errors", "failed", "cancelled"]


def test_a_failed_job_reports_failed_with_no_download_and_at_most_20_errors(
    simulator: Sim, hooked: Service, receiver: Receiver
) -> None:
    order_id = seed(simulator, *(SeedImage(name=f"bad{i:02}.jpg", status="error") for i in range(25)))
    with hooked.client() as client:
        create(client, order_id, json={"callback_url": f"{receiver.url}/hooks"})
    payload = receiver.wait_for(1)[0].verified()
    assert (payload["event"], payload["status"], payload["downloaded"], payload["failed"]) == (
        "job.failed",
        "failed",
        0,
        25,
    )
    assert payload["download_url"] is None
    assert payload["error"]
    assert len(payload["errors"]) == 20
    assert payload["errors"][0].startswith("bad00.jpg: ")


def test_a_raw_text_secret_signs_too(simulator: Sim, start_service: Callable[..., Service], receiver: Receiver) -> None:
    service = start_service(**(FAST_RETRIES | {"webhook_secret": "not base64, just a passphrase"}))
    with service.client() as client:
        create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/x"})
    call = receiver.wait_for(1)[0]
    assert Webhook(b"not base64, just a passphrase").verify(call.body, call.headers)["status"] == "completed"
    with pytest.raises(Exception, match="signature"):
        call.verified(SECRET)  # a different secret does not verify


# -- retries ----------------------------------------------------------------------------------------


def test_failed_attempts_are_retried_with_backoff_under_the_same_webhook_id(
    simulator: Sim, hooked: Service, receiver: Receiver
) -> None:
    receiver.plan = [500, 503]
    with hooked.client() as client:
        job = create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/h"})
        calls = receiver.wait_for(3)
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "delivered")
    assert {c.headers["webhook-id"] for c in calls} == {f"msg_job_{job['job_id']}"}
    assert {c.body for c in calls} == {calls[0].body}  # the same message every time
    for call in calls:
        call.verified()  # each attempt signed afresh, each valid
    assert calls[1].at - calls[0].at >= 0.02 and calls[2].at - calls[1].at >= 0.02  # waited (base 0.05, jittered)
    assert (state["attempts"], state["last_status_code"]) == (3, 200)


def test_delivery_gives_up_when_the_retry_window_ends(
    simulator: Sim, start_service: Callable[..., Service], receiver: Receiver
) -> None:
    receiver.default = 500
    service = start_service(**(FAST_RETRIES | {"webhook_retry_window_seconds": 0.8}))
    with service.client() as client:
        job = create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/h"})
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "failed")
    assert state["attempts"] >= 3
    assert state["last_error"] == "receiver answered HTTP 500"
    count = len(receiver.received)
    assert count == state["attempts"]
    time.sleep(0.5)
    assert len(receiver.received) == count  # nothing after giving up


def test_410_gone_stops_the_retries(simulator: Sim, hooked: Service, receiver: Receiver) -> None:
    receiver.default = 410
    with hooked.client() as client:
        job = create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/h"})
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "failed")
    assert (state["attempts"], state["last_status_code"]) == (1, 410)
    time.sleep(0.3)
    assert len(receiver.received) == 1


def test_redirects_are_not_followed(simulator: Sim, hooked: Service, receiver: Receiver) -> None:
    receiver.plan = [307]
    receiver.location = "/elsewhere"
    with hooked.client() as client:
        job = create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/h"})
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "delivered")
    assert [c.path for c in receiver.received] == ["/h", "/h"]  # retried at the same URL, /elsewhere never hit
    assert state["attempts"] == 2


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    simulator: Sim, start_service: Callable[..., Service], receiver: Receiver
) -> None:
    receiver.delays = [2.0]
    service = start_service(**(FAST_RETRIES | {"webhook_timeout_seconds": 0.3}))
    with service.client() as client:
        job = create(client, seed(simulator, SeedImage(name="a.jpg")), json={"callback_url": receiver.url + "/h"})
        state = webhook_state(client, job["job_id"], lambda w: w["status"] == "delivered")
    assert state["attempts"] == 2
    assert len({c.headers["webhook-id"] for c in receiver.received}) == 1


def test_retry_schedule_is_exponential_jittered_and_lasts_the_window() -> None:
    policy = RetryPolicy(base=5, max_delay=1800, window=6 * 3600)
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert [policy.delay(n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [2.5, 5, 10, 20]
    assert policy.delay(30, rand=lambda: 1.0) == 1800  # capped
    delivery = Delivery("msg_x", "http://h", "{}", None, created_at=1000.0, next_attempt_at=1000.0, attempts=3)
    assert policy.next_attempt(delivery, now=1000.0 + 6 * 3600 - 1) == 1000.0 + 6 * 3600  # last one at the end
    assert policy.next_attempt(delivery, now=1000.0 + 6 * 3600) is None
    # the defaults keep trying for at least 10 minutes, even with the shortest jitter
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.webhook_retry_window_seconds >= 600
    shortest = RetryPolicy(defaults.webhook_retry_base_seconds, defaults.webhook_retry_max_delay_seconds, 600)
    assert sum(shortest.delay(n, rand=lambda: 0.0) for n in range(1, 7)) < 600  # several tries inside 10 min


# -- restart --------------------------------------------------------------------------------------


def test_a_pending_callback_survives_a_restart_and_keeps_its_webhook_id(
    simulator: Sim, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = 503
    settings = service_settings(simulator.url, tmp_path / "data", **FAST_RETRIES)
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        job_id = create(client, order_id, json={"callback_url": receiver.url + "/h"})["job_id"]
        receiver.wait_for(2)
    before = len(receiver.received)
    time.sleep(0.3)
    assert len(receiver.received) == before  # stopped: nobody is sending
    receiver.default = 200
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        state = webhook_state(client, job_id, lambda w: w["status"] == "delivered")
    assert state["attempts"] == len(receiver.received) > before
    assert {c.headers["webhook-id"] for c in receiver.received} == {f"msg_job_{job_id}"}
    assert receiver.received[-1].verified()["status"] == "completed"


def test_a_job_cut_off_by_shutdown_reports_failed_after_the_next_start(
    simulator: Sim, tmp_path: Path, receiver: Receiver
) -> None:
    settings = service_settings(simulator.url, tmp_path / "data", **FAST_RETRIES)
    order_id = seed(simulator, SeedImage(name="slow.jpg"))
    simulator.state.add_fault(Fault(kind="latency", image_id=image_id(simulator, order_id, "slow.jpg"), seconds=5))
    receiver.default = 503  # so the callback queued at shutdown cannot be delivered before it
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        job_id = create(client, order_id, json={"callback_url": receiver.url + "/h"})["job_id"]
        poll(client, job_id, lambda s: s["status"] == "running")
    receiver.default = 200
    with serve(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        webhook_state(client, job_id, lambda w: w["status"] == "delivered")
    payload = receiver.received[-1].verified()
    assert (payload["status"], payload["error"]) == ("failed", SHUTDOWN_REASON)


# -- refusals ---------------------------------------------------------------------------------------


def test_bad_callback_urls_are_422_before_any_upstream_call(simulator: Sim, hooked: Service) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    simulator.state.reset_stats()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"json": {"callback_url": "ftp://example.com/x"}}, "must be an absolute http:// or https:// URL"),
        ({"json": {"callback_url": "example.com/hook"}}, "must be an absolute http:// or https:// URL"),
        ({"json": {"callback_url": "http:///nohost"}}, "has no host"),
        ({"json": {"callback_url": "https://user:pw@example.com/"}}, "must not carry credentials"),
        ({"json": {"callback_url": "https://example.com/#frag"}}, "must not have a #fragment"),
        ({"json": {"callback_url": "https://exa mple.com/"}}, "spaces or control characters"),
        ({"json": {"callback_url": "https://example.com:99999/"}}, "not a valid URL"),
        ({"json": {"callback_url": "https://example.com/" + "a" * 2100}}, "callback_url"),
        ({"headers": {"callbackUrl": "gopher://example.com/"}}, "must be an absolute http:// or https:// URL"),
        (
            {"json": {"callback_url": "https://a.example/"}, "headers": {"callbackUrl": "https://b.example/"}},
            "differ",
        ),
        ({"json": {"callback_url": "https://a.example/", "extra": 1}}, "extra"),
    ]
    with hooked.client() as client:
        for kwargs, message in cases:
            response = client.post(f"/orders/{order_id}/jobs", **kwargs)
            assert response.status_code == 422, (kwargs, response.text)
            assert message in response.json()["detail"], (kwargs, response.json())
    assert simulator.state.stats["order_get"] == 0


def test_callbacks_need_a_webhook_secret(simulator: Sim, service: Service, receiver: Receiver) -> None:
    with service.client() as client:
        response = client.post(
            f"/orders/{seed(simulator, SeedImage(name='a.jpg'))}/jobs", json={"callback_url": receiver.url}
        )
    assert response.status_code == 422
    assert "WEBHOOK_SECRET" in response.json()["detail"]


def test_private_loopback_and_metadata_targets_are_refused_at_creation(
    simulator: Sim, start_service: Callable[..., Service], receiver: Receiver
) -> None:
    service = start_service(**(FAST_RETRIES | {"webhook_allow_private": False}))
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    refused = {
        receiver.url + "/h": "loopback",  # a live receiver, still refused
        "http://localhost:8080/h": "loopback",  # a name that resolves to loopback
        "http://[::1]/h": "loopback",
        "http://169.254.169.254/latest/meta-data/": "metadata",
        "http://[fd00:ec2::254]/": "metadata",
        "http://169.254.1.1/": "link-local",
        "http://10.1.2.3/": "private",
        "http://192.168.0.10/": "private",
        "http://172.16.5.4/": "private",
        "http://100.64.0.1/": "private",  # carrier-grade NAT
        "http://[fd12:3456::1]/": "unique-local",
        "http://[::ffff:127.0.0.1]/": "loopback",  # IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/": "metadata",  # NAT64 of 169.254.169.254
        "http://224.0.0.1/": "multicast",
        "http://0.0.0.0/": "unspecified",
        "http://2130706433/": "loopback",  # 127.0.0.1 as one decimal number
    }
    with service.client() as client:
        for url, reason in refused.items():
            response = client.post(f"/orders/{order_id}/jobs", json={"callback_url": url})
            assert response.status_code == 422, (url, response.text)
            detail = response.json()["detail"]
            assert "not allowed" in detail and reason in detail, (url, detail)
        response = client.post(f"/orders/{order_id}/jobs", json={"callback_url": "http://no-such-host.invalid/h"})
        assert response.status_code == 422
        assert "does not resolve" in response.json()["detail"]
    assert receiver.received == []


def test_ipv6_forms_that_embed_ipv4_are_judged_by_the_ipv4_inside(
    simulator: Sim, start_service: Callable[..., Service], receiver: Receiver
) -> None:
    """Python's is_global calls most of these public; the packets go to the IPv4 address inside."""
    service = start_service(**(FAST_RETRIES | {"webhook_allow_private": False}))
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    refused = {
        "http://[::127.0.0.1]/h": "loopback",  # IPv4-compatible
        "http://[::10.0.0.1]/h": "private",
        "http://[::ffff:0:127.0.0.1]/h": "loopback",  # IPv4-translated
        "http://[2002:a9fe:a9fe::1]/h": "metadata",  # 6to4 of 169.254.169.254
        "http://[2002:7f00:1::1]/h": "loopback",  # 6to4 of 127.0.0.1
        "http://[64:ff9b:1::a9fe:a9fe]/h": "local-use NAT64",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/h": "loopback",  # Teredo, client 127.0.0.1
        "http://[2001:4860:1:2:0:5efe:a00:1]/h": "private",  # ISATAP of 10.0.0.1
    }
    with service.client() as client:
        for url, reason in refused.items():
            response = client.post(f"/v1/orders/{order_id}/jobs", json={"callback_url": url})
            assert response.status_code == 422, (url, response.text)
            detail = response.json()["detail"]
            assert "not allowed" in detail and reason in detail, (url, detail)
    assert receiver.received == []


def test_the_address_rule() -> None:
    import ipaddress

    for address in METADATA_ADDRESSES:
        assert refusal(address) == "a cloud metadata address"
    public_forms = ("::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1")  # IPv6 forms of a public IPv4
    for public in ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8", "1.1.1.1", *public_forms):
        assert refusal(ipaddress.ip_address(public)) is None, public
    for private in ("127.0.0.2", "10.0.0.1", "::1", "fe80::1", "ff02::1", "192.0.2.1", "198.18.0.1", "240.0.0.1"):
        assert refusal(ipaddress.ip_address(private)) is not None, private


def test_an_unsafe_address_is_refused_again_at_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """DNS can change after creation: the dispatcher checks the address it dials, at every attempt."""
    from app.webhooks.dispatcher import Dispatcher
    from app.webhooks.outbox import SqliteOutbox
    from app.webhooks.urls import callback_client

    async def scenario() -> list[Delivery]:
        outbox = await SqliteOutbox.open(tmp_path / "outbox.sqlite3")
        client = callback_client(allow_private=False, timeout=5)
        dispatcher = Dispatcher(outbox, client, signer(SECRET), RetryPolicy(0.05, 0.1, 30), timeout=5)
        try:
            for n, url in enumerate([receiver.url + "/h", receiver.url.replace("127.0.0.1", "localhost") + "/h"]):
                now = time.time()
                await outbox.add(Delivery(f"msg_{n}", url, "{}", f"job{n}", created_at=now, next_attempt_at=now))
            assert await dispatcher.run_once() == 2
            return [d for n in range(2) if (d := await outbox.get(f"msg_{n}")) is not None]
        finally:
            await client.aclose()
            await outbox.close()

    settled = asyncio.run(scenario())
    assert [d.status for d in settled] == [DeliveryStatus.failed, DeliveryStatus.failed]
    for delivery in settled:
        assert delivery.last_error is not None and delivery.last_error.startswith("refused: ")
        assert "loopback" in delivery.last_error
    assert receiver.received == []  # nothing was sent


def self_signed_localhost(directory: Path) -> tuple[Path, Path]:
    """A certificate for DNS:localhost only (no IP address), made by the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_callbacks_keep_certificate_checks_through_the_pinned_connection(tmp_path: Path) -> None:
    """The delivery client dials an address it checked itself; TLS must still verify the URL's host name."""
    import ssl

    from app.webhooks.dispatcher import Dispatcher
    from app.webhooks.outbox import SqliteOutbox
    from app.webhooks.urls import callback_client

    cert, key = self_signed_localhost(tmp_path)
    hooks = Receiver()
    with serve(hooks.app(), ssl_certfile=str(cert), ssl_keyfile=str(key)) as plain_url:
        port = plain_url.rsplit(":", 1)[1]

        async def scenario() -> list[Delivery]:
            outbox = await SqliteOutbox.open(tmp_path / "outbox.sqlite3")
            trust = ssl.create_default_context(cafile=str(cert))
            client = callback_client(allow_private=True, timeout=5, ssl_context=trust)
            dispatcher = Dispatcher(outbox, client, signer(SECRET), RetryPolicy(5, 5, 30), timeout=5)
            try:
                now = time.time()
                for n, host in enumerate(("localhost", "127.0.0.1")):  # the certificate names only localhost
                    url = f"https://{host}:{port}/h{n}"
                    await outbox.add(Delivery(f"msg_{n}", url, '{"n": 1}', None, created_at=now, next_attempt_at=now))
                await dispatcher.run_once()
                return [d for n in range(2) if (d := await outbox.get(f"msg_{n}")) is not None]
            finally:
                await client.aclose()
                await outbox.close()

        by_name, by_address = asyncio.run(scenario())
    assert by_name.status is DeliveryStatus.delivered
    assert [r.path for r in hooks.received] == ["/h0"]
    hooks.received[0].verified()
    assert by_address.status is DeliveryStatus.pending  # retried later, never sent
    assert by_address.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in by_address.last_error


# -- plumbing ---------------------------------------------------------------------------------------


def test_job_finished_is_idempotent(simulator: Sim, tmp_path: Path) -> None:
    """A job runner that reports the same job twice (a retried task) queues one callback."""
    from app.core.models import BatchOptions
    from app.jobs.records import Job, JobStatus
    from app.webhooks import Webhooks

    settings = service_settings(simulator.url, tmp_path, **FAST_RETRIES)
    job = Job(
        job_id="j1",
        order_id="o1",
        order_name=None,
        status=JobStatus.completed,
        options=BatchOptions(),
        total=1,
        downloaded=1,
        created_at=time.time(),
        finished_at=time.time(),
        callback_url="http://127.0.0.1:9/h",
        public_base_url="http://svc",
    )

    async def scenario() -> list[Delivery]:
        webhooks = await Webhooks.start(settings, dispatch=False)
        try:
            await webhooks.job_finished(job)
            await webhooks.job_finished(job)
            await webhooks.job_finished(Job(**{**job.__dict__, "callback_url": None, "job_id": "j2"}))
            return await webhooks.outbox.for_job("j1") + await webhooks.outbox.for_job("j2")
        finally:
            await webhooks.aclose()

    (delivery,) = asyncio.run(scenario())
    assert delivery.webhook_id == "msg_job_j1"
    assert signed_headers(signer(SECRET), delivery.webhook_id, delivery.body)["webhook-id"] == "msg_job_j1"


def test_an_old_jobs_database_gains_the_callback_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:  # the schema of the first release
        db.execute(
            "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, order_name TEXT, status TEXT NOT "
            "NULL, options TEXT NOT NULL, total INTEGER NOT NULL, downloaded INTEGER NOT NULL DEFAULT 0, failed "
            "INTEGER NOT NULL DEFAULT 0, error TEXT, failures TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL, "
            "started_at REAL, finished_at REAL, expired_at REAL, size INTEGER)"
        )
        db.execute("INSERT INTO jobs (job_id, order_id, status, options, total, created_at) VALUES "
                   "('old', 'o', 'complete', '{}', 3, 1.0)")  # fmt: skip

    async def scenario() -> Any:
        store = await SqliteJobStore.open(path)
        try:
            return await store.get("old")
        finally:
            await store.close()

    job = asyncio.run(scenario())
    assert (job.job_id, job.total, job.callback_url, job.public_base_url) == ("old", 3, None, None)
    assert job.status is JobStatus.completed  # the first release's word, `complete`, read as today's
    asyncio.run(scenario())  # opening again is a no-op, not a duplicate-column error


def test_openapi_declares_the_callback_with_its_payload_schema(hooked: Service) -> None:
    spec = httpx.get(hooked.url + "/openapi.json").json()
    for path in ("/v1/orders/{order_id}/jobs", "/v1/orders/{order_id}/watch"):
        callbacks = spec["paths"][path]["post"]["callbacks"]
        assert set(callbacks) == {"jobFinished", "jobFinishedViaHeader"}
        by_body = callbacks["jobFinished"]["{$request.body#/callback_url}"]["post"]
        assert by_body["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/JobCallback"
        }
        assert "webhook-signature" in by_body["description"]
        assert "{$request.header.callbackUrl}" in callbacks["jobFinishedViaHeader"]
    schema = spec["components"]["schemas"]["JobCallback"]
    assert set(schema["required"]) >= {"event", "job_id", "order_id", "status", "total", "downloaded", "failed",
                                       "duration_seconds", "download_url", "errors"}  # fmt: skip
    assert schema["properties"]["status"]["enum"] == ["completed", "completed_with_errors", "failed", "cancelled"]
    create_job = spec["paths"]["/v1/orders/{order_id}/jobs"]["post"]
    assert any(p["name"] == "callbackUrl" and p["in"] == "header" for p in create_job["parameters"])
    assert "422" in create_job["responses"]


def test_the_dispatcher_stops_when_woken_and_cancelled_at_once(tmp_path: Path) -> None:
    """A job's shutdown queues its callback (waking the dispatcher) just before the dispatcher is
    stopped. Python 3.11's `asyncio.wait_for` drops a cancellation that arrives as its awaitable
    finishes, and the dispatcher then polled on forever: a stopped worker hung until SIGKILL."""
    from app.webhooks.dispatcher import Dispatcher
    from app.webhooks.outbox import SqliteOutbox
    from app.webhooks.urls import callback_client

    async def scenario() -> bool:
        outbox = await SqliteOutbox.open(tmp_path / "outbox.sqlite3")
        client = callback_client(allow_private=True, timeout=5)
        dispatcher = Dispatcher(outbox, client, signer(SECRET), RetryPolicy(5, 5, 30), timeout=5)
        task = asyncio.create_task(dispatcher.run_forever())
        try:
            for _ in range(20):  # until it idles in its wait
                await asyncio.sleep(0.01)
            dispatcher.wake()
            task.cancel()  # in the same step as the wake-up, as Services.aclose does
            done, _ = await asyncio.wait({task}, timeout=3)
            return task in done and task.cancelled()
        finally:
            task.cancel()
            await client.aclose()
            await outbox.close()

    assert asyncio.run(scenario()), "the dispatcher kept running after it was cancelled"
