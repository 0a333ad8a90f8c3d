"""Labels say what the files are: the full set is a preview at most 1024 px wide by default, and the
mls and web sets are "at most" their width (a narrower photo is not enlarged)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from PIL import Image

from simulator import SeedImage
from tests.conftest import TEST_KEY, Sim
from tests.support.cli_runner import run_process


def photo(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_the_help_describes_what_each_set_really_holds(simulator: Sim, tmp_path: Path) -> None:
    code, out, _ = run_process("download", "--help", env={"COLUMNS": "200"})
    assert code == 0
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    assert "mls (JPEG, at most 2048 px wide" in flat and "web (JPEG, at most 1024 px wide" in flat
    assert "free preview at most 1024 px wide" in flat

    order = simulator.state.seed_order(name="Narrow", images=[SeedImage(name="n.jpg", data=photo(1800, 1200))])
    out_zip = tmp_path / "n.zip"
    code, _, err = run_process("download", str(order["order_id"]), "-o", str(out_zip), "--api-key", TEST_KEY,
                               "--base-url", simulator.url, "--sets", "full,mls", "--yes")
    assert code == 0, err
    archive = zipfile.ZipFile(out_zip)
    with Image.open(io.BytesIO(archive.read("mls/n.jpg"))) as mls, Image.open(io.BytesIO(archive.read("full/n.jpg"))) as full:
        assert mls.width == 1800  # "at most 2048": an 1800 px photo stays 1800
        assert full.width == 1024  # the default full set is the free preview
