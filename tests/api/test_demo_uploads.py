"""Uploads are bounded before they cost memory: pixels read from the header before any decode, and
the demo simulator's store of uploaded photos kept within DEMO_UPLOAD_STORE_BYTES.

A PNG of a few hundred KiB can declare 7700 x 7700 pixels and cost hundreds of MiB once decoded;
it must be refused from its header with a clear 422. In demo mode every upload is kept in the
embedded simulator's memory: past the bound the oldest are dropped (and read `expired`).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app import create_app
from app.config import DEMO_ORDER_ID, Settings
from harness.servers import serve


def png_header_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, all black: tiny on disk, huge once decoded."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_header_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + png_header_chunk(b"IDAT", idat)
        + png_header_chunk(b"IEND", b"")
    )


def noise_jpeg(side: int, seed: int) -> bytes:
    """A real JPEG that does not compress (random pixels): a few hundred KiB per photo."""
    pixels = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        autoenhance_api_key=None,
        data_dir=tmp_path,
        log_level="WARNING",
        demo_upload_store_bytes=1024 * 1024,
    )
    app = create_app(settings)
    with serve(app) as url:
        yield url, app


def upload(url: str, name: str, data: bytes, content_type: str) -> httpx.Response:
    return httpx.post(f"{url}/api/create-order", files=[("files", (name, data, content_type))], timeout=60)


def test_a_small_png_declaring_huge_dimensions_is_refused_from_its_header(demo: tuple[str, Any]) -> None:
    url, app = demo
    huge = blank_png(7700, 7700)
    assert len(huge) < 300 * 1024  # a few hundred KiB on the wire
    response = upload(url, "huge.png", huge, "image/png")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'huge.png' is 7700 x 7700 pixels" in detail and "MAX_UPLOAD_PIXELS" in detail
    assert len(app.state.services.simulator.orders) == 1  # only the demo order: nothing created


def test_the_pixel_check_reads_only_the_header(tmp_path: Path, simulator: Any) -> None:
    """Live mode too (MAX_UPLOAD_PIXELS, default 50 MP): a header claiming 12000 x 12000 followed by
    the start of pixel data that is then cut off is refused for its size, which only the header tells."""
    from tests.conftest import service_settings

    settings = service_settings(simulator.url, tmp_path, admin_token="admin")
    ihdr = png_header_chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
    header_only = b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 10**6) + b"IDAT" + b"junk" * 10
    with serve(create_app(settings)) as url:
        response = httpx.post(
            f"{url}/api/create-order",
            files=[("files", ("claims.png", header_only, "image/png"))],
            headers={"X-Admin-Token": "admin"},
            timeout=60,
        )
    assert response.status_code == 422
    assert "'claims.png' is 12000 x 12000 pixels" in response.json()["detail"]


def test_the_demo_store_of_uploads_stays_within_its_bound(demo: tuple[str, Any]) -> None:
    url, app = demo
    state = app.state.services.simulator
    photos = [noise_jpeg(600, n) for n in range(8)]
    assert sum(map(len, photos)) > 2 * 1024 * 1024  # twice the bound, at least
    orders = []
    for n, photo in enumerate(photos):
        response = upload(url, f"room {n}.jpg", photo, "image/jpeg")
        assert response.status_code == 200, response.text
        orders.append(response.json()["order_id"])
        held = sum(len(i.data or b"") for i in state.images.values() if i.order_id != DEMO_ORDER_ID)
        assert held <= 1024 * 1024, f"{held} bytes held after {n + 1} uploads"
    oldest = httpx.get(f"{url}/orders/{orders[0]}/photos", timeout=30).json()
    assert [p["status"] for p in oldest["photos"]] == ["expired"]
    newest = httpx.get(f"{url}/orders/{orders[-1]}/images", params={"sets": "original"}, timeout=60)
    assert newest.status_code == 200
    assert photos[-1] in newest.content  # the newest upload is whole, byte for byte
    assert httpx.get(f"{url}/orders/{DEMO_ORDER_ID}/images", timeout=60).status_code == 200  # demo order kept
