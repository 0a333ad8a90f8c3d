"""The demo order: the bundled sample photos, seeded under a fixed order id.

The service's demo mode (no API key configured) serves this order from an in-process simulator.
The id is duplicated from app.config on purpose (importing the app from here would be circular);
a test keeps the two equal.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from simulator.state import SeedImage, SimulatorState

DEMO_ORDER_ID = "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c"
DEMO_ORDER_NAME = "Demo order: 3 sample rooms"
SAMPLES_DIR = Path(__file__).resolve().parent / "sample_images"
_DEMO_NAMESPACE = uuid.UUID(DEMO_ORDER_ID)


def sample_paths() -> list[Path]:
    """The bundled JPEG photos, in a stable order."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))


def sample_seeds(*, stable_ids: bool = False) -> list[SeedImage]:
    """One processed SeedImage per sample photo; stable ids derive from the file name."""
    return [
        SeedImage(
            name=path.name,
            data=path.read_bytes(),
            image_id=str(uuid.uuid5(_DEMO_NAMESPACE, path.name)) if stable_ids else None,
        )
        for path in sample_paths()
    ]


def seed_demo(state: SimulatorState) -> dict[str, Any]:
    """Seed the demo order (idempotent) and return its JSON."""
    if DEMO_ORDER_ID in state.orders:
        return state.order_json(state.orders[DEMO_ORDER_ID])
    return state.seed_order(order_id=DEMO_ORDER_ID, name=DEMO_ORDER_NAME, images=sample_seeds(stable_ids=True))
