"""GET /ready: each dependency really checked, each failure named (503)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from harness.servers import free_port, serve
from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cluster import REDIS_URL, redis_or_skip


def ready(service: Service) -> httpx.Response:
    return httpx.get(f"{service.url}/ready", timeout=30)


def test_ready_when_upstream_answers_and_storage_is_writable(service: Service) -> None:
    response = ready(service)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"upstream", "storage"}  # no REDIS_URL: Redis is not checked
    assert body["checks"]["upstream"] == body["checks"]["upstream"] | {"ok": True, "detail": "reachable, key accepted"}
    assert body["checks"]["storage"]["ok"] is True
    assert response.headers["cache-control"] == "no-store"
    assert httpx.get(f"{service.url}/health").json()["status"] == "ok"


def test_not_ready_when_upstream_is_unreachable(start_service: Callable[..., Service]) -> None:
    service = start_service(autoenhance_base_url=f"http://127.0.0.1:{free_port()}")
    response = ready(service)
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["upstream"]["ok"] is False
    assert "could not be reached" in body["checks"]["upstream"]["detail"]
    assert body["checks"]["storage"]["ok"] is True
    assert body["detail"].startswith("Not ready: upstream (")
    assert httpx.get(f"{service.url}/health").status_code == 200  # alive, just not ready


def test_not_ready_when_upstream_rejects_the_key(simulator: Sim, start_service: Callable[..., Service]) -> None:
    service = start_service(autoenhance_api_key="not-the-simulators-key")
    response = ready(service)
    assert response.status_code == 503
    assert response.json()["checks"]["upstream"]["detail"] == "Autoenhance rejected the API key (HTTP 401)"
    assert "not-the-simulators-key" not in response.text


def test_not_ready_when_upstream_fails(start_service: Callable[..., Service]) -> None:
    async def overloaded(_: Request) -> PlainTextResponse:
        return PlainTextResponse("overloaded: internal detail", status_code=503)

    with serve(Starlette(routes=[Route("/{path:path}", overloaded)])) as upstream:
        service = start_service(autoenhance_base_url=upstream)
        response = ready(service)
    assert response.status_code == 503
    assert response.json()["checks"]["upstream"]["detail"] == "Autoenhance answered HTTP 503"
    assert "internal detail" not in response.text  # upstream bodies never reach callers


def test_not_ready_when_storage_is_not_writable(service: Service) -> None:
    data_dir = service.settings.data_dir
    jobs_dir = service.settings.jobs_dir
    shutil.rmtree(jobs_dir)
    jobs_dir.write_text("a file where the jobs directory should be")  # root ignores permissions; this it cannot
    try:
        response = ready(service)
        assert response.status_code == 503
        storage = response.json()["checks"]["storage"]
        assert storage["ok"] is False
        assert str(jobs_dir) in storage["detail"] and "not writable" in storage["detail"]
    finally:
        jobs_dir.unlink()
        jobs_dir.mkdir()
    assert ready(service).status_code == 200
    assert data_dir.is_dir()


def test_redis_is_checked_when_configured(start_service: Callable[..., Service]) -> None:
    redis_or_skip()
    service = start_service(redis_url=REDIS_URL, redis_key_prefix=f"test-ready-{uuid.uuid4().hex}:")
    response = ready(service)
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["redis"] == response.json()["checks"]["redis"] | {"ok": True}


def test_not_ready_when_configured_redis_does_not_answer(start_service: Callable[..., Service]) -> None:
    service = start_service(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = ready(service)
    assert response.status_code == 503
    redis = response.json()["checks"]["redis"]
    assert redis["ok"] is False and redis["detail"].startswith("Redis did not answer")
    assert response.json()["checks"]["upstream"]["ok"] is True


def test_redis_down_at_start_the_service_serves_and_jobs_answer_503(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    """A dead Redis must not crash-loop the service: streams work, job routes say what is wrong."""
    order = simulator.state.seed_order(images=[SeedImage(name="a.jpg", size=20_000)])
    service = start_service(redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit="")
    with service.client() as client:
        assert client.get(f"/v1/orders/{order['order_id']}/images").status_code == 200
        job = client.post(f"/v1/orders/{order['order_id']}/jobs")
        assert job.status_code == 503
        assert job.headers["retry-after"] == "5"
        assert job.json()["detail"] == "The service's shared store (Redis) is not answering; try again shortly"
