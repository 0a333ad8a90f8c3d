"""Swagger's "Try it out" works on first try against a default service (demo mode): the order id
is a parameter-level example (what Swagger UI fills in) and the jobs body's first example is one the
service accepts without WEBHOOK_SECRET."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app import create_app
from harness.servers import serve
from tests.support.browser_helpers import demo_settings


@pytest.fixture(scope="module")
def default_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("swagger")))) as url:
        yield url


def parameter_example(operation: dict[str, Any], name: str) -> Any:
    """The value Swagger UI puts in the field: the parameter's `example`, or its first `examples` entry."""
    for parameter in operation["parameters"]:
        if parameter["name"] == name:
            if "example" in parameter:
                return parameter["example"]
            examples = parameter.get("examples") or {}
            return next(iter(examples.values()))["value"] if examples else None
    raise AssertionError(f"no parameter {name}")


def test_every_order_id_field_is_filled_with_an_order_the_service_has(default_service: str) -> None:
    with httpx.Client(base_url=default_service, timeout=60) as client:
        spec = client.get("/openapi.json").json()
        checked = 0
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if "{order_id}" not in path or method not in ("get", "head"):
                    continue
                order_id = parameter_example(operation, "order_id")
                assert order_id, f"{method} {path} has no parameter-level example"
                answer = client.request(method.upper(), path.replace("{order_id}", order_id))
                assert answer.status_code == 200, (path, answer.text[:200])
                checked += 1
    assert checked >= 2


def test_the_jobs_first_body_example_is_accepted(default_service: str) -> None:
    with httpx.Client(base_url=default_service, timeout=60) as client:
        spec = client.get("/openapi.json").json()
        path = "/v1/orders/{order_id}/jobs"
        operation = spec["paths"][path]["post"]
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        body = next(iter(examples.values()))["value"]
        order_id = parameter_example(operation, "order_id")
        created = client.post(path.replace("{order_id}", order_id), json=body)
    assert created.status_code == 202, created.text

