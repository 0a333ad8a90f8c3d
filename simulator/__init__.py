"""A local, faithful stand-in for the Autoenhance v3 API (demo mode, tests, benchmarks).

    from simulator import create_app, SimulatorState, SeedImage, Fault
    state = SimulatorState(api_keys=None, processing_seconds=0.0, asset_base_url=None,
                           download_latency=0.0, max_concurrent_downloads=None)
    app = create_app(state)                     # ASGI (Starlette); state at app.state.simulator
    order = state.seed_order(name="12 Oak Street", images=[SeedImage(name="a.jpg", size=2_000_000)])
    state.add_fault(Fault(kind="rate_limit", times=2, retry_after=1))
    state.stats["enhanced"], state.synthetic_bytes(image_id), state.clear_faults(), state.reset_stats()

Out of process: `python -m simulator --port P [--demo]` and the /_simulator/ control API
(simulator/control.py). Contract choices are documented in simulator/app.py; the lifecycle in
simulator/state.py; fault semantics in simulator/faults.py.
"""

from simulator.app import create_app
from simulator.faults import Fault
from simulator.state import SeedImage, SimulatorState

__all__ = ["Fault", "SeedImage", "SimulatorState", "create_app"]
