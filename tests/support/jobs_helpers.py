"""Seeding an order in the simulator and polling a job until it gets where a test needs it: the steps
every job, webhook and watch test starts with."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from simulator import SeedImage
from tests.conftest import Sim


def seed(sim: Sim, *images: SeedImage, name: str = "12 Oak Street") -> str:
    return str(sim.state.seed_order(name=name, images=list(images))["order_id"])


def image_id(sim: Sim, order_id: str, name: str) -> str:
    order = sim.state.order_json(sim.state.get_order(order_id))
    return next(str(i["image_id"]) for i in order["images"] if i["image_name"] == name)


Status = dict[str, Any]


def poll(client: httpx.Client, job_id: str, until: Callable[[Status], bool], timeout: float = 15) -> Status:
    """GET /jobs/{id} until `until(status)` holds; fail with the last status on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if until(status):
            return status
        assert time.monotonic() < deadline, f"job never reached the condition: {status}"
        time.sleep(0.05)
