"""The offline fallback of `make audit` reads the registry's vulnerability data correctly.

The registry is faked here (httpx.MockTransport): no real package can be made vulnerable on demand.
The real registry is queried by `make test` itself (tools/audit.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tools.audit import pins, registry_check

ADVISORY = {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["2.0"], "withdrawn": None}


def client(routes: dict[str, tuple[int, dict[str, Any]]]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        status, body = routes.get(request.url.path, (404, {}))
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_per_version_document_is_used_when_served() -> None:
    c = client({"/pypi/lib/1.0/json": (200, {"vulnerabilities": [ADVISORY, ADVISORY | {"withdrawn": "2024"}]})})
    how, advisories, note = registry_check(c, "lib", "1.0")
    assert (how, [a["id"] for a in advisories], note) == ("per-version", ["PYSEC-1"], None)


def test_latest_document_counts_only_when_the_pin_is_the_latest() -> None:
    latest = {"info": {"version": "1.0"}, "releases": {"1.0": [{"yanked": False}]}, "vulnerabilities": [ADVISORY]}
    how, advisories, _ = registry_check(client({"/pypi/lib/json": (200, latest)}), "lib", "1.0")
    assert how == "latest" and len(advisories) == 1
    newer = latest | {"info": {"version": "2.0"}}
    how, advisories, note = registry_check(client({"/pypi/lib/json": (200, newer)}), "lib", "1.0")
    assert how == "unverified" and advisories == [] and note is not None and "latest 2.0" in note


def test_pins_read_every_exact_pin(tmp_path: Any) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("uvicorn[standard]==0.54.0\n    # via x\nSome_Lib==1.2 ; python_version>'3'\nloose>=1\n")
    assert pins([str(req)]) == {"uvicorn": "0.54.0", "some-lib": "1.2"}
