"""`autoenhance-batch demo`: the whole download tried without a key, against the bundled simulator.

The simulator (simulator/, a stand-in for the Autoenhance v3 API) runs in this process as an ASGI
app reached through httpx, so nothing listens on a port and nothing leaves the computer; the engine,
the progress and the ZIP are the ones `download --api-key` uses. Needs only the base install:
the simulator's Starlette and Pillow are base dependencies for this reason.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from app.cli.direct import DirectRun
from app.core.models import BatchOptions

DEMO_BASE_URL = "http://simulator.demo"
DEMO_KEY = "demo-key"  # the simulator made here accepts any key
DEMO_LATENCY_SECONDS = 0.4
"""Added to each download so the progress bars are seen moving; the demo order has three photos."""


def demo_run(options: BatchOptions, out: Path, timeout: float) -> tuple[DirectRun, str]:
    """A direct run against a fresh simulator holding the demo order; (run, the demo order's id)."""
    from simulator import SimulatorState, create_app  # Starlette and Pillow load only for the demo
    from simulator.demo import DEMO_ORDER_ID, seed_demo

    state = SimulatorState(download_latency=DEMO_LATENCY_SECONDS)
    seed_demo(state)
    transport = httpx.ASGITransport(app=create_app(state))
    run = DirectRun(DEMO_ORDER_ID, options, out, DEMO_KEY, DEMO_BASE_URL, timeout=timeout, transport=transport)
    run.asset_hosts = []  # the demo's assets live on the simulator's own origin
    return run, DEMO_ORDER_ID
