"""schemathesis against the service's own OpenAPI, over real HTTP: whatever it sends, no 5xx, and every
response matches what the schema documents (status, content type, headers, body).

Driven through schemathesis' Python API with Hypothesis (its pytest plugin's `from_fixture` does not
run under pytest 9 yet): one property test per operation, all operations checked, failures collected.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import DEMO_ORDER_ID
from tests.conftest import Service

EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""What the issue asks. Not "positive data acceptance": a schema-valid multipart body of random bytes is
rightly refused by the upload routes (not an image), and the schema cannot say "a real JPEG"."""


@pytest.mark.heavy
def test_api_honours_its_schema(start_service: Callable[..., Service]) -> None:
    # demo mode: the demo order exists, so the fuzzer reaches real archives, not only 404s
    # webhooks configured too, so the callback and watch routes are fuzzed live rather than switched off
    service = start_service(
        autoenhance_api_key=None,
        rate_limit="",
        cache_ttl_seconds=0,
        webhook_secret="whsec_" + base64.b64encode(b"f" * 32).decode(),
        autoenhance_webhook_token="fuzz-token",
    )
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    checked: list[str] = []
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)

        try:
            check()
        except Exception as exc:
            failures[operation.label] = str(exc)[:3000]
        checked.append(operation.label)
    # random UUIDs rarely name an order: check the demo order's real ZIP (200) and a job on it as well
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/v1/orders/{order_id}/images", "/v1/orders/{order_id}/jobs"):
            response = operation.Case(path_parameters={"order_id": DEMO_ORDER_ID}).call_and_validate(
                checks=CHECKS, timeout=30
            )
            assert response.status_code in (200, 202), response.status_code
            checked.append(f"{operation.label} (demo order)")
    assert len(checked) >= 10, checked  # every route of the API was exercised
    assert sum(label.endswith("(demo order)") for label in checked) == 2, checked
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
