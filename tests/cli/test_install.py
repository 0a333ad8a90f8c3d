"""The package as a stranger gets it: installed from this clone into a fresh virtualenv, without the
`server` extra, then `autoenhance-batch download` run against the simulator with no service anywhere.

The virtualenv has no system site-packages, so every import the command makes must come from the
package's own base dependencies; FastAPI and uvicorn must be absent. The venv is made without pip
(`--without-pip`) and filled by this environment's `uv pip install --python` (the installer
`make install-dev` uses): the same package metadata and registry as pip or pipx, in about 1.5 s where
pip spent 30 s or more building the package and resolving it again.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from PIL import Image

from harness.servers import free_port
from tests.support.zipcheck import check_zip

ROOT = Path(__file__).resolve().parents[2]
KEY = "install-test-key"
# one fresh install for the whole module: its tests stay on one parallel worker
pytestmark = pytest.mark.xdist_group("install")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only autoenhance-batch and its base dependencies; returns its bin/."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    uv = Path(sys.executable).parent / "uv"
    installer = [str(uv), "pip", "install"] if uv.is_file() else [sys.executable, "-m", "pip", "install"]
    result = subprocess.run(
        [*installer, "--python", str(python), "-q", str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"\nfresh install of the package took {time.monotonic() - started:.1f} s")
    return venv / "bin"


@pytest.fixture(scope="module")
def simulator_process() -> Iterator[str]:
    """`python -m simulator`, as its own process on a loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", str(port), "--api-key", KEY],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_simulator/stats", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not start"
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_base_install_has_the_command_and_no_server_stack(installed: Path) -> None:
    assert (installed / "autoenhance-batch").is_file()
    probe = subprocess.run(
        [str(installed / "python"), "-c",
         "import importlib.util as u; print([m for m in ('fastapi', 'uvicorn', 'redis', 'taskiq', 'pillow_jxl') "
         "if u.find_spec(m)])"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    helped = subprocess.run([str(installed / "autoenhance-batch"), "download", "--help"], capture_output=True,
                            text=True, timeout=60, env=os.environ | {"COLUMNS": "100"})
    assert helped.returncode == 0 and "--api-key" in helped.stdout
    serve = subprocess.run([str(installed / "autoenhance-batch"), "serve"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 1 and "server extra" in serve.stderr and "Traceback" not in serve.stderr
    advice = " ".join(serve.stderr.split())
    assert "pipx install --force 'autoenhance-batch[server]'" in advice  # `[server]` is text, not a style tag
    assert "autoenhance-batch demo" in advice


def test_base_install_tries_the_demo_without_a_key(installed: Path, tmp_path: Path) -> None:
    """The photographer's first command: nothing but the base install, no key, no service, no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENHANCE", "VIRTUAL_ENV"))}
    result = subprocess.run([str(installed / "autoenhance-batch"), "demo"], capture_output=True, text=True,
                            timeout=180, env=env | {"COLUMNS": "120"}, cwd=tmp_path)
    flat = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr
    assert "This is a demo" in flat and "3 of 3 images" in flat and "--api-key KEY" in flat
    names = check_zip((tmp_path / "autoenhance-demo.zip").read_bytes())
    assert len([n for n in names if n.endswith(".jpg")]) == 3 and "_manifest.json" in names


def test_installed_command_downloads_sets_straight_from_the_simulator(
    installed: Path, simulator_process: str, tmp_path: Path
) -> None:
    seeded = httpx.post(f"{simulator_process}/_simulator/orders", json={"name": "Sample listing", "samples": True})
    assert seeded.status_code == 201
    order = seeded.json()
    photos = [img["image_name"] for img in order["images"]]
    out = tmp_path / "listing.zip"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENHANCE", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [str(installed / "autoenhance-batch"), "download", order["order_id"], "-o", str(out),
         "--base-url", simulator_process, "--sets", "full,mls,web,original", "--names", "sequence", "--yes",
         "--max-width", "640"],
        capture_output=True, text=True, timeout=180, env=env | {"AUTOENHANCE_API_KEY": KEY, "COLUMNS": "120"},
        cwd=tmp_path,
    )
    flat = " ".join(result.stderr.split())
    assert result.returncode == 0, result.stderr
    assert "Saved" in flat and f"{4 * len(photos)} of {4 * len(photos)} files" in flat
    assert "Spends up to" in flat  # mls is full resolution: the cost was said before the downloads

    names = check_zip(out.read_bytes())
    archive = zipfile.ZipFile(out)
    for number, photo in enumerate(photos, start=1):
        stem = photo.rsplit(".", 1)[0]
        for folder in ("full", "mls", "web", "original"):
            assert f"{folder}/{number:02d} - {stem}.jpg" in names
        with Image.open(io.BytesIO(archive.read(f"full/{number:02d} - {stem}.jpg"))) as img:
            assert img.width <= 640
    manifest = json.loads(archive.read("_manifest.json"))
    assert manifest["sets"] == ["full", "mls", "web", "original"]
    assert all(f["name"].startswith(f["set"] + "/") for f in manifest["files"])

    log = httpx.get(f"{simulator_process}/_simulator/requests").json()
    downloads = [(e["path"], parse_qs(e["query"])) for e in log if e["path"].endswith(("/enhanced", "/original"))]
    assert len(downloads) == 4 * len(photos)
    assert sum(q.get("max_width") == ["640"] for _, q in downloads) == len(photos)
    assert sum(q.get("max_width") == ["2048"] and q.get("preview") == ["false"] for _, q in downloads) == len(photos)
    assert sum(p.endswith("/original") and q == {} for p, q in downloads) == len(photos)
