"""The official `autoenhance` SDK (unmodified, from PyPI) runs its whole workflow against the simulator.

Each version lives in `.sdk/<version>` (installed by `make sdks`) and runs in its own interpreter
via tests/support/sdk_scenario.py, so the two never share an import. A field the simulator gets wrong
makes the SDK's strict models raise, and the scenario exits non-zero with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.servers import serve
from simulator import SimulatorState, create_app

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).resolve().parents[1] / "support" / "sdk_scenario.py"
KEY = "sdk-fidelity-key"


def sdk_dir(version: str) -> Path:
    path = ROOT / ".sdk" / version
    if not (path / "autoenhance" / "__init__.py").is_file():
        reason = f"official SDK {version} not installed in {path} (run `make sdks`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("version", ["1.1.0", "1.0.7"])
def test_official_sdk_workflow(version: str) -> None:
    path = sdk_dir(version)
    state = SimulatorState(api_keys={KEY}, processing_seconds=0.3)
    with serve(create_app(state)) as base:
        result = subprocess.run(
            [sys.executable, str(SCENARIO), base, KEY],
            env={**os.environ, "PYTHONPATH": str(path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, f"SDK {version} scenario failed:\n{result.stderr}\n{result.stdout}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sdk"] == version

    order = state.orders[summary["order_id"]]
    assert order.name == "Renamed by the SDK"
    assert order.image_ids == [] and summary["image_id"] not in state.images  # deleted by the SDK
    assert summary["hdr_order_id"] not in state.orders
    stats = state.stats
    assert stats["credits_spent"] == 1  # the one preview=false download, not dev mode
    assert stats["upload"] == 1 + (0 if version >= "1.1" else 1)
    assert stats["enhanced"] == 4 and stats["original"] == 1 and stats["asset"] == 5  # png, jpeg, avif, jxl
    assert stats["image_report"] == 1 and stats["image_process"] == 1 and stats["order_update"] == 1
    assert stats["order_list"] == 1 and stats["image_delete"] == 1
    assert stats["image_get"] >= 3  # polled until processed, twice, then the 404 check
    assert stats["concurrent_downloads"] == 0


def test_scenario_fails_loudly_on_a_bad_api_key() -> None:
    path = sdk_dir("1.1.0")
    state = SimulatorState(api_keys={KEY})
    with serve(create_app(state)) as base:
        result = subprocess.run(
            [sys.executable, str(SCENARIO), base, "wrong-key"],
            env={**os.environ, "PYTHONPATH": str(path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "SDK scenario failed" in result.stderr and "401" in result.stderr
    assert state.orders == {}
