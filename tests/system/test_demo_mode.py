"""Demo mode: no API key, the embedded simulator, the demo order downloadable as documented."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from app import create_app
from app.config import DEMO_ORDER_ID, Settings
from harness.servers import serve
from tests.support.zipcheck import check_zip


@pytest.fixture
def demo_url(tmp_path: Path):
    settings = Settings(_env_file=None, autoenhance_api_key=None, data_dir=tmp_path, log_level="WARNING")  # type: ignore[call-arg]
    with serve(create_app(settings)) as url:
        yield url


def test_health_says_demo(demo_url: str) -> None:
    body = httpx.get(f"{demo_url}/health").json()
    assert body == body | {"status": "ok", "mode": "demo", "api_key_configured": False, "demo_order_id": DEMO_ORDER_ID}


def test_readme_curl_line_matches_the_demo_order() -> None:
    readme = Path("README.md").read_text()
    assert f'curl "http://localhost:8000/orders/{DEMO_ORDER_ID}/images" -o images.zip' in readme


def test_demo_order_downloads_enhanced_sample_photos(demo_url: str) -> None:
    response = httpx.get(f"{demo_url}/orders/{DEMO_ORDER_ID}/images", timeout=60)
    assert response.status_code == 200
    members = check_zip(response.content)
    photos = {name: data for name, data in members.items() if name.endswith(".jpg")}
    samples = {p.name: p.read_bytes() for p in Path("simulator/sample_images").glob("*.jpg")}
    assert sorted(photos) == sorted(samples)
    for name, data in photos.items():
        enhanced = Image.open(io.BytesIO(data)).convert("RGB")
        original = Image.open(io.BytesIO(samples[name])).convert("RGB").resize(enhanced.size)
        difference = ImageStat.Stat(ImageChops.difference(enhanced, original)).mean
        assert sum(difference) / 3 > 3, f"{name}: the enhancement is not visible"


def test_demo_png_full_resolution_dev_mode(demo_url: str) -> None:
    response = httpx.get(f"{demo_url}/orders/{DEMO_ORDER_ID}/images",
                         params={"format": "png", "preview": "false", "dev_mode": "true"}, timeout=120)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        pngs = [n for n in zf.namelist() if n.endswith(".png")]
        assert len(pngs) == 3
        assert Image.open(io.BytesIO(zf.read(pngs[0]))).width >= 1600
    assert re.search(r"filename\*=UTF-8''", response.headers["content-disposition"])


def test_demo_mode_creates_sample_orders_without_admin_token(demo_url: str) -> None:
    response = httpx.post(f"{demo_url}/api/create-sample-order", timeout=60)
    assert response.status_code == 200
    assert response.json()["images"] == 3
