"""The first command a stranger runs: `autoenhance-batch demo` needs no key and no service, and
`download` without either says what to do instead of a connection error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.cli_runner import run_process
from tests.support.zipcheck import check_zip


def test_demo_downloads_the_sample_order_with_no_key_and_no_service(tmp_path: Path) -> None:
    code, _, err = run_process("demo", cwd=tmp_path)
    assert code == 0, err
    assert "Order Demo order: 3 sample rooms: 3 photos" in err and "This is a demo" in err
    assert "images" in err and "3/3" in err  # the progress bars ran
    assert "Saved autoenhance-demo.zip" in err and "3 of 3 images" in err
    assert "autoenhance-batch download ORDER_ID --api-key KEY" in err  # what to do next
    assert "credit" not in err.lower()  # nothing is charged in the demo, and nothing says so falsely
    names = check_zip((tmp_path / "autoenhance-demo.zip").read_bytes())
    assert sorted(n for n in names if n.endswith(".jpg")) == ["exterior.jpg", "kitchen.jpg", "living-room.jpg"]
    assert not list(tmp_path.glob("*.part*"))


def test_demo_takes_sets_and_keeps_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "sets.zip"
    code, _, err = run_process("demo", "-o", str(out), "--sets", "full,web,original", "--names", "sequence")
    assert code == 0, err
    assert "9 of 9 files" in err
    folders = {name.split("/")[0] for name in check_zip(out.read_bytes()) if "/" in name}
    assert folders == {"full", "web", "original"}
    before = out.read_bytes()
    code, _, err = run_process("demo", "-o", str(out))
    assert code != 0 and "--force" in err and out.read_bytes() == before


def _something_listens_on_8000() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 8000)) == 0


def test_download_without_a_key_or_a_service_says_how_to_try_or_pass_a_key(tmp_path: Path) -> None:
    if _something_listens_on_8000():
        pytest.skip("a process on this machine listens on 127.0.0.1:8000, the default service address")
    code, _, err = run_process("download", "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c", "-o", str(tmp_path / "x.zip"))
    assert code == 2, err
    assert "No --api-key given" in err and "autoenhance-batch demo" in err and "--url" in err
    assert "ConnectError" not in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
