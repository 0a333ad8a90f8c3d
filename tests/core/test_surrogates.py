"""Lone UTF-16 surrogates in upstream names are repaired where the JSON is parsed.

`"\\ud83d room 1.jpg"` is valid JSON (half an emoji, as a client cutting a string by UTF-16 units
leaves it); the simulator sends such names as the real API does, as `\\uXXXX` escapes. The name
could not be encoded as UTF-8, so the streamed route answered 500 after its downloads had started
(and kept their slots), and direct mode crashed with a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from app import create_app
from app.cli.main import EXIT_PARTIAL
from app.core.upstream.text import valid_json, valid_text
from harness.servers import serve
from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim, service_settings
from tests.support.cli_runner import run
from tests.support.hostile_upstream import ORDER_ID, RawNamesUpstream
from tests.support.zipcheck import check_zip

HALF = "\ud83d"  # the high half of U+1F600's surrogate pair, alone
PAIR = "\ud83d\ude00"  # both halves as two code points: one emoji, as CESU-8 bytes decode
EMOJI = "\U0001f600"
FFFD = "\ufffd"


@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        ("room 1.jpg", "room 1.jpg"),
        (f"{HALF} room 1.jpg", f"{FFFD} room 1.jpg"),
        ("room \ude00.jpg", f"room {FFFD}.jpg"),
        (f"{PAIR} pair.jpg", f"{EMOJI} pair.jpg"),
        ("\ude00\ud83d", FFFD * 2),  # low then high: not a pair
        (f"x{HALF}", f"x{FFFD}"),
    ],
)
def test_valid_text(raw: str, repaired: str) -> None:
    assert valid_text(raw) == repaired
    repaired.encode("utf-8")  # encodable now


def test_valid_json_repairs_keys_and_nested_values() -> None:
    assert valid_json({f"k{HALF}": [HALF, {"n": PAIR}, 3, None]}) == {f"k{FFFD}": [FFFD, {"n": EMOJI}, 3, None]}


def seed_surrogate_order(simulator: Sim) -> str:
    images = [
        SeedImage(name=f"{HALF} room 1.jpg", size=30_000),
        SeedImage(name="room 2 \ude00.jpg", size=30_000),
        SeedImage(name=f"{PAIR} pair.jpg", size=30_000),
        SeedImage(name=f"porch {HALF}.jpg", status="error", status_reason=f"{HALF} blurred"),
    ]
    return str(simulator.state.seed_order(name=f"{HALF} Villa", images=images)["order_id"])


EXPECTED = {f"{FFFD} room 1.jpg", f"room 2 {FFFD}.jpg", f"{EMOJI} pair.jpg", "_download_report.txt", "_manifest.json"}


def test_the_route_answers_valid_zips_for_surrogate_names_again_and_again(
    simulator: Sim, start_service: Callable[..., Service]
) -> None:
    # every request builds its archive (no cache), with a small budget that a leak would exhaust
    service = start_service(cache_ttl_seconds=0, max_concurrent_downloads=2, max_global_downloads=4, rate_limit="")
    order_id = seed_surrogate_order(simulator)
    with service.client(timeout=15) as client:  # a hang fails on the read timeout
        for _ in range(6):
            response = client.get(f"/orders/{order_id}/images")
            assert response.status_code == 200, response.text
            disposition = response.headers["content-disposition"]
            assert f"filename*=UTF-8''{quote(f'{FFFD} Villa.zip', safe='')}" in disposition
            members = check_zip(response.content)
            assert set(members) == EXPECTED
            report = members["_download_report.txt"].decode("utf-8")
            assert f"porch {FFFD}.jpg" in report and f"{FFFD} blurred" in report and f"{FFFD} Villa" in report
            manifest = json.loads(members["_manifest.json"])
            assert {f["name"] for f in manifest["files"]} == EXPECTED - {"_download_report.txt", "_manifest.json"}
        photos = client.get(f"/orders/{order_id}/photos")
        assert photos.status_code == 200
        assert {p["name"] for p in photos.json()["photos"]} >= {f"{FFFD} room 1.jpg", f"{EMOJI} pair.jpg"}
        deadline = time.monotonic() + 10
        while (stats := client.get("/api/stats").json()["downloads"])["active_batches"] and time.monotonic() < deadline:
            time.sleep(0.05)
    assert stats["in_flight"] == 0 and stats["active_batches"] == 0


def test_direct_mode_downloads_an_order_with_surrogate_names(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed_surrogate_order(simulator)
    out = tmp_path / "villa.zip"
    code, _, err = run("download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url)
    assert code == EXIT_PARTIAL, err  # the porch photo is in error upstream, the rest saved
    assert "Saved" in err and f"{FFFD} Villa" in err and f"porch {FFFD}.jpg" in err
    assert set(check_zip(out.read_bytes())) == EXPECTED


def test_surrogates_sent_as_raw_bytes_are_repaired_too(tmp_path: Path) -> None:
    """The same halves as raw CESU-8 bytes in the body (a hostile upstream): joined or replaced alike."""
    upstream = RawNamesUpstream({"a": f"{HALF} room 1.jpg", "b": f"{PAIR} pair.jpg"}, order_name=f"{HALF} Villa")
    with serve(upstream) as upstream_url:
        settings = service_settings(upstream_url, tmp_path, cache_ttl_seconds=0, rate_limit="")
        with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=15) as client:
            for _ in range(5):
                response = client.get(f"/orders/{ORDER_ID}/images")
                assert response.status_code == 200, response.text
                assert set(check_zip(response.content)) == {f"{FFFD} room 1.jpg", f"{EMOJI} pair.jpg", "_manifest.json"}
                assert quote(f"{FFFD} Villa.zip", safe="") in response.headers["content-disposition"]
            deadline = time.monotonic() + 10
            while (stats := client.get("/api/stats").json()["downloads"])["active_batches"] and time.monotonic() < deadline:
                time.sleep(0.05)
    assert stats["in_flight"] == 0 and stats["active_batches"] == 0
