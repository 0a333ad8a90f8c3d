"""Upstream JSON is decoded under a cap: a compressed bomb in the order fetch is refused mid-inflate."""

from __future__ import annotations

import resource
from pathlib import Path

import httpx
import pytest

from app import create_app
from harness.bomb_upstream import Bomb
from harness.servers import serve
from tests.conftest import service_settings

MiB = 1024 * 1024


def _fetch(bomb: Bomb, tmp_path: Path, limit: int = MiB) -> tuple[int, str]:
    with serve(bomb.app()) as upstream:
        settings = service_settings(upstream, tmp_path / "data", max_upstream_json_bytes=limit, cache_ttl_seconds=0)
        with serve(create_app(settings)) as url:
            response = httpx.get(f"{url}/v1/orders/{bomb.order_id}/images", timeout=60)
    return response.status_code, response.text


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "identity"])
def test_an_order_over_the_decoded_limit_is_refused(tmp_path: Path, encoding: str) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status, text = _fetch(Bomb(pad=(100 if encoding != "identity" else 4) * MiB, encoding=encoding), tmp_path)
    assert status == 502, text
    assert "MAX_UPSTREAM_JSON_BYTES" in text
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 60, f"peak RSS grew {grown_mib:.0f} MiB while refusing a 1 MiB-capped answer"


def test_an_encoding_not_asked_for_is_refused(tmp_path: Path) -> None:
    status, text = _fetch(Bomb(pad=1000, encoding="br"), tmp_path)
    assert status == 502 and "not asked for" in text, text


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "identity"])
def test_an_order_under_the_limit_is_served_whatever_its_encoding(tmp_path: Path, encoding: str) -> None:
    status, text = _fetch(Bomb(pad=512 * 1024, encoding=encoding), tmp_path)
    assert status == 200, text
