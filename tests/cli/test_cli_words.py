"""What a first hour runs into: errors that say what to do, output paths that do what they say,
and a --help that can be followed literally. Each runs the real command as its own process."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness.servers import free_port
from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run_process
from tests.support.zipcheck import check_zip


def seed(sim: Sim, name: str = "12 Oak St") -> str:
    images = [SeedImage(name=f"room {n}.jpg", size=5000) for n in range(1, 3)]
    return str(sim.state.seed_order(name=name, images=images)["order_id"])


# -- --help ----------------------------------------------------------------------------------------------


def test_help_shows_real_flags_plain_ranges_every_exit_code_and_a_version() -> None:
    code, out, _ = run_process("--version")
    assert code == 0 and re.fullmatch(r"autoenhance-batch \d+\.\d+\.\d+\s*", out)
    code, out, _ = run_process("download", "--help", env={"COLUMNS": "160"})
    assert code == 0
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    for text in ("--dev-mode --no-dev-mode", "--wait --no-wait", "--job --no-job", "1-90", "130 interrupted",
                 "autoenhance-batch demo", "FILE|FOLDER/"):
        assert text in flat, text
    assert "<=x<=" not in flat and "[x>=" not in flat  # click's range notation
    code, out, _ = run_process("--help")
    assert "autoenhance-batch demo" in out


def test_no_help_row_shows_a_type_beside_a_flag() -> None:
    """A flag takes no value: `--force <bool>` (typer's way, its own --help included) reads as if it did."""
    for command in ("", "download", "demo", "orders", "serve", "cancel", "share", "sets", "sample-order"):
        code, out, _ = run_process(*command.split(), "--help", env={"COLUMNS": "200"})
        assert code == 0, command
        rows = [line for line in out.splitlines() if line.lstrip("│ ").startswith("-")]
        assert any("--help" in row for row in rows), command
        assert "<bool>" not in out, (command, [row for row in rows if "<bool>" in row])


def test_boolean_flags_take_their_no_forms(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "f.zip"), "--api-key", TEST_KEY,
                               "--base-url", simulator.url, "--no-dev-mode", "--no-wait", "--format", "jpg")
    assert code == 0, err  # --format jpg is jpeg
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "q.zip"), "--quality", "95")
    assert code == 2 and "must be 1-90" in err


# -- errors that say what to do ---------------------------------------------------------------------------


def test_a_base_url_without_a_scheme_is_refused_at_once(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "x.zip"), "--api-key", TEST_KEY,
                               "--base-url", simulator.url.removeprefix("http://"))
    assert code == 2, err
    assert "is not a web address" in err and "https://" in err
    assert "stamina" not in err and "retry" not in err


def test_an_unreachable_base_url_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_process("download", "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c", "-o", str(tmp_path / "x.zip"),
                               "--api-key", TEST_KEY, "--base-url", url)
    assert code == 1, err
    assert f"Could not reach Autoenhance at {url}" in err and "--base-url" in err
    assert "stamina" not in err and "retry_scheduled" not in err and "Traceback" not in err
    assert err.count("Error:") == 1


def test_failed_photos_print_no_raw_log_lines(simulator: Sim, tmp_path: Path) -> None:
    order = simulator.state.seed_order(name="Half", images=[SeedImage(name="a.jpg", size=4000),
                                                            SeedImage(name="b.jpg", status="processing")])
    code, _, err = run_process("download", str(order["order_id"]), "-o", str(tmp_path / "h.zip"), "--api-key",
                               TEST_KEY, "--base-url", simulator.url)
    assert code == 3, err
    assert "image failed" not in err and "b.jpg" in err


def test_a_service_key_refusal_names_the_flag(simulator: Sim, start_service: Callable[..., Service],
                                              tmp_path: Path) -> None:
    order_id = seed(simulator)
    service = start_service(service_api_key="the-service-key")
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "k.zip"), "--url", service.url)
    assert code == 1, err
    assert "--key" in err and "AUTOENHANCE_BATCH_KEY" in err
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "k.zip"), "--url", service.url + "/v1/",
                               "--key", "the-service-key")
    assert code == 0, err  # the API's /v1 on --url is understood, not a 404
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "s.zip"), "--url", "127.0.0.1:8000")
    assert code == 2 and "is not a web address" in err


# -- output paths -------------------------------------------------------------------------------------------


def test_output_paths_a_new_folder_an_existing_folder_and_the_order_name(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator, name="12 Oak St [v2]")
    base = ("download", order_id, "--api-key", TEST_KEY, "--base-url", simulator.url)
    code, _, err = run_process(*base, "-o", str(tmp_path / "Photos") + "/")
    assert code == 0, err
    assert (tmp_path / "Photos").is_dir() and check_zip((tmp_path / "Photos" / "12 Oak St [v2].zip").read_bytes())

    existing = tmp_path / "Listings"
    existing.mkdir()
    code, _, err = run_process(*base, "-o", str(existing))
    assert code == 0, err
    assert [p.name for p in existing.iterdir()] == ["12 Oak St [v2].zip"]

    code, _, err = run_process(*base, cwd=tmp_path)  # no -o: the order's name, here
    assert code == 0, err
    assert (tmp_path / "12 Oak St [v2].zip").is_file()

    code, _, err = run_process(*base, cwd=tmp_path)
    assert code == 2 and "--force" in err  # an existing file is a usage error like the others
