"""Names and reasons from Autoenhance are printed as text: never markup, never a terminal control.

The command runs as its own process (stderr a pipe, so rich adds no escapes of its own: any ESC in
the output would have come from the data).
"""

from __future__ import annotations

from pathlib import Path

from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run_process
from tests.support.zipcheck import check_zip

ESC, RLO = "\x1b", "\u202e"
ORDER_NAME = f"[sold] 12 Oak St [/v2] {ESC}[31mred{RLO}"
REASON = f"[/i] blurred {ESC}[2J[bold]"


def seed(sim: Sim) -> str:
    order = sim.state.seed_order(name=ORDER_NAME, images=[
        SeedImage(name="[/i]kitchen.jpg", size=4000),
        SeedImage(name=f"living {ESC}]0;owned{ESC}\\ room [x].jpg", size=4000),
        SeedImage(name="[red]porch.jpg", status="error", status_reason=REASON),
    ])
    return str(order["order_id"])


def assert_printed_as_text(err: str) -> None:
    assert "Traceback" not in err and "MarkupError" not in err
    assert ESC not in err and RLO not in err  # neutralised, shown as U+FFFD
    assert "[red]porch.jpg: " in err and "[/i] blurred \ufffd[2J[bold]" in err  # the reason, brackets and all


def test_direct_mode_prints_names_and_reasons_as_they_are(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    out = tmp_path / "names.zip"
    code, _, err = run_process("download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url)
    assert code == 3, err  # saved, one photo missing: not a crash after the save
    assert_printed_as_text(err)
    assert "Order [sold] 12 Oak St [/v2] \ufffd[31mred\ufffd: 3 photos" in err
    names = check_zip(out.read_bytes())
    assert "[_i]kitchen.jpg" in names or "[/i]kitchen.jpg" in names or any("kitchen" in n for n in names)


def test_client_mode_prints_names_and_reasons_as_they_are(simulator: Sim, service: Service, tmp_path: Path) -> None:
    order_id = seed(simulator)
    for job in ([], ["--job"]):
        out = tmp_path / f"names{len(job)}.zip"
        code, _, err = run_process("download", order_id, "-o", str(out), "--url", service.url, *job)
        assert code == 3, err
        assert_printed_as_text(err)
        assert any("kitchen" in n for n in check_zip(out.read_bytes()))


def test_an_output_path_with_brackets_is_printed_as_it_is(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    out = tmp_path / "[b] photos [x].zip"
    code, _, err = run_process("download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", simulator.url)
    assert code == 3, err
    assert f"Saved {out}" in err
    # '[/x]' is no order id; direct mode would look it up as an order's name, so ask in client mode, where
    # only ids are taken: refused on the command line (exit 2) before any request
    code, _, err = run_process("download", "[/x]", "-o", str(out), "--url", simulator.url)
    assert code == 2 and "Traceback" not in err and "[/x]" in err
    # in direct mode it is a name: no order has it, and the name is printed as it is
    code, _, err = run_process("download", "[/x]", "-o", str(tmp_path / "other.zip"), "--api-key", TEST_KEY,
                               "--base-url", simulator.url)
    assert code == 1 and "Traceback" not in err and "'[/x]'" in err
