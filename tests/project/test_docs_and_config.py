"""The contract is documented: every setting in .env.example and docs/configuration.md, every route in OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app import create_app
from app.config import Settings
from simulator import SeedImage
from tests.conftest import Service, Sim

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"\n{field.upper()}=" in (ROOT / ".env.example").read_text()
    assert f"`{field.upper()}`" in (ROOT / "docs" / "configuration.md").read_text()


def test_openapi_documents_every_route_with_its_errors(tmp_path: Path) -> None:
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    spec = app.openapi()
    paths = spec["paths"]
    expected = {
        ("/v1/orders/{order_id}/images", "get"): {"200", "400", "401", "404", "422", "502"},
        ("/v1/orders/{order_id}/jobs", "post"): {"202", "400", "404", "422", "502"},
        ("/v1/jobs/{job_id}", "get"): {"200", "404"},
        ("/v1/jobs/{job_id}/download", "get"): {"200", "404", "409", "410"},
        ("/v1/api/create-order", "post"): {"200", "401", "403", "413", "422", "502"},
        ("/v1/api/create-sample-order", "post"): {"200", "401", "403", "502"},
        ("/v1/api/orders", "get"): {"200", "401", "403", "502"},
        ("/health", "get"): {"200"},
        ("/ready", "get"): {"200", "503"},
        ("/metrics", "get"): {"200"},
        ("/v1/api/stats", "get"): {"200"},
    }
    for (path, method), codes in expected.items():
        operation = paths[path][method]
        assert operation.get("summary"), f"{method} {path} has no summary"
        assert codes <= set(operation["responses"]), f"{method} {path}: {set(operation['responses'])}"
    batch = paths["/v1/orders/{order_id}/images"]["get"]
    params = {p["name"]: p for p in batch["parameters"]}
    assert set(params) >= {"order_id", "format", "quality", "preview", "dev_mode"}
    assert all(p.get("description") for p in params.values())
    assert "application/zip" in batch["responses"]["200"]["content"]


def test_docs_page_is_served(service: Service) -> None:
    with service.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        assert client.get("/openapi.json").json()["info"]["title"] == "Autoenhance Batch"


def test_logs_are_json_with_request_and_order_context(simulator: Sim, start_service: Callable[..., Service],
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    service = start_service(log_level="INFO")  # started here so its log handler writes to the captured stderr
    order_id = str(simulator.state.seed_order(name="x", images=[SeedImage(name="a.jpg", size=10),
                                                                SeedImage(name="b.jpg", status="processing")])["order_id"])
    httpx.get(f"{service.url}/orders/{order_id}/images", headers={"X-Request-ID": "req-42"}, timeout=30)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("request_id") == "req-42"]
    events = {line["event"] for line in ours}
    assert {"order fetched", "image failed", "image downloaded"} <= events
    assert all(line["order_id"] == order_id for line in ours if line["event"] != "batch finished")
    assert not any("test-upstream-key" in json.dumps(line) for line in lines)  # the key never reaches logs
