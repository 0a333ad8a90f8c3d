"""Ask before spending: in a terminal a download that spends credits asks [y/N]; without one it needs
--yes (exit 2 otherwise, and nothing is asked of Autoenhance or the service)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simulator import SeedImage
from tests.conftest import TEST_KEY, Service, Sim
from tests.support.cli_runner import run_in_terminal, run_process
from tests.support.zipcheck import check_zip

SERVICE_KEY = "consent-service-key"


def seed(sim: Sim) -> str:
    images = [SeedImage(name=f"room {n}.jpg", size=5000) for n in range(1, 4)]
    return str(sim.state.seed_order(name="12 Oak St", images=images)["order_id"])


def direct_args(sim: Sim, order_id: str, out: Path) -> list[str]:
    return ["download", order_id, "-o", str(out), "--api-key", TEST_KEY, "--base-url", sim.url, "--sets", "full,mls"]


def test_without_a_terminal_spending_needs_yes(simulator: Sim, service: Service, tmp_path: Path) -> None:
    order_id = seed(simulator)
    simulator.state.reset_stats()
    for mode in (["--api-key", TEST_KEY, "--base-url", simulator.url], ["--url", service.url]):
        code, _, err = run_process("download", order_id, "-o", str(tmp_path / "x.zip"), "--no-preview", *mode)
        assert code == 2, err
        assert "pass --yes" in err and "Nothing was asked or spent" in err
    assert list(simulator.state.request_log) == []  # refused before any request, in both modes
    assert not list(tmp_path.glob("x.zip*"))

    code, _, err = run_process(*direct_args(simulator, order_id, tmp_path / "y.zip"), "--yes")
    assert code == 0, err
    assert simulator.state.stats["credits_spent"] == 3
    code, _, err = run_process(*direct_args(simulator, order_id, tmp_path / "free.zip"), "--dev-mode")
    assert code == 0, err  # dev mode spends nothing: no --yes needed
    code, _, err = run_process("download", order_id, "-o", str(tmp_path / "p.zip"), "--api-key", TEST_KEY,
                               "--base-url", simulator.url)
    assert code == 0, err  # previews are free


def test_in_a_terminal_no_stops_before_anything_is_spent(simulator: Sim, tmp_path: Path) -> None:
    order_id = seed(simulator)
    simulator.state.reset_stats()
    code, shown = run_in_terminal(*direct_args(simulator, order_id, tmp_path / "n.zip"), answer="n")
    assert code == 1, shown
    assert "Spends up to 3 Autoenhance credits" in shown and "Spend up to 3 Autoenhance credits? [y/N]" in shown
    assert "no credit was spent" in shown
    assert simulator.state.stats["credits_spent"] == 0 and not (tmp_path / "n.zip").exists()
    downloads = [e for e in simulator.state.request_log if e["path"].endswith("/enhanced")]
    assert downloads == []


def test_in_a_terminal_yes_downloads(simulator: Sim, start_service: Callable[..., Service], tmp_path: Path) -> None:
    order_id = seed(simulator)
    # the service spends credits only for callers it trusts (SERVICE_API_KEY): this caller is one
    service = start_service(service_api_key=SERVICE_KEY)
    code, shown = run_in_terminal(*direct_args(simulator, order_id, tmp_path / "y.zip"), answer="y")
    assert code == 0, shown
    assert "[y/N]" in shown and "Saved" in shown
    assert len([n for n in check_zip((tmp_path / "y.zip").read_bytes()) if n.endswith(".jpg")]) == 6

    code, shown = run_in_terminal("download", order_id, "-o", str(tmp_path / "c.zip"), "--url", service.url,
                                  "--key", SERVICE_KEY, "--no-preview", answer="y")
    assert code == 0, shown
    assert "Order 12 Oak St: 3 photos, set: full" in shown and "Spend up to 3 Autoenhance credits? [y/N]" in shown
    code, shown = run_in_terminal("download", order_id, "-o", str(tmp_path / "free.zip"), "--url", service.url,
                                  "--key", SERVICE_KEY, answer=None)
    assert code == 0 and "[y/N]" not in shown, shown  # previews: nothing to ask
