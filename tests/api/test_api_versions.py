"""The API under /v1/, with today's unversioned paths kept as working aliases outside the schema."""

from __future__ import annotations

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.zipcheck import check_zip

UNVERSIONED_ON_PURPOSE = {"/health", "/ready", "/metrics"}  # probes and scrapes are infrastructure, not API


def test_schema_documents_only_the_versioned_paths(service: Service) -> None:
    with service.client() as client:
        paths = set(client.get("/openapi.json").json()["paths"])
    assert paths - UNVERSIONED_ON_PURPOSE
    assert all(path.startswith("/v1/") for path in paths - UNVERSIONED_ON_PURPOSE), sorted(paths)
    assert "/orders/{order_id}/images" not in paths
    # a share link opens a page for people (like `/`) at an address that must outlive API versions: not API
    assert not any(path.startswith("/share/") for path in paths)
    assert "/v1/jobs/{job_id}/share" in paths  # making and revoking links is API, versioned
    assert paths >= UNVERSIONED_ON_PURPOSE


def test_unversioned_aliases_answer_like_v1(simulator: Sim, service: Service) -> None:
    order_id = str(simulator.state.seed_order(name="Alias", images=[SeedImage(name="a.jpg", size=2000)])["order_id"])
    with service.client() as client:
        versioned = client.get(f"/v1/orders/{order_id}/images")
        alias = client.get(f"/orders/{order_id}/images")
        assert versioned.status_code == alias.status_code == 200
        assert set(check_zip(versioned.content)) == set(check_zip(alias.content))
        assert client.get("/orders/nope/images").json() == client.get("/v1/orders/nope/images").json()
        job = client.post(f"/orders/{order_id}/jobs")
        assert job.status_code == 202
        job_id = job.json()["job_id"]
        # the links a client stores name the canonical path, whichever prefix created the job
        assert job.headers["location"] == job.json()["status_url"] == f"/v1/jobs/{job_id}"
        assert job.json()["download_url"] == f"/v1/jobs/{job_id}/download"
        assert client.get(f"/v1/jobs/{job_id}").json()["job_id"] == job_id  # one job store behind both
        assert client.get(f"/jobs/{job_id}").status_code == 200
        assert client.get("/api/stats").json().keys() == client.get("/v1/api/stats").json().keys()
        assert client.get("/v1/health").status_code == 404  # probes live at the root only
