"""The wiring: every service built by one `Services.start`, closed by `aclose`, and a start that fails
halfway closes what it had opened (no dispatcher or job loop left running, no client left open)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from app.ops.telemetry import Telemetry
from app.wiring import Services
from tests.conftest import Sim, service_settings


def _running() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()}


def test_start_then_aclose_leaves_nothing_running(simulator: Sim, tmp_path: Path) -> None:
    settings = service_settings(simulator.url, tmp_path)

    async def scenario() -> None:
        before = _running()
        services = await Services.start(settings, Telemetry.from_settings(settings))
        started = _running() - before
        assert {"webhooks-dispatch", "webhooks-watches", "jobs-cleanup"} <= started
        assert services.jobs.store is services.jobs.runner.store  # one store, shared by its parts
        await services.aclose()
        assert services.http.is_closed
        assert _running() - before == set()

    asyncio.run(scenario())


def test_a_start_that_fails_halfway_closes_what_it_opened(simulator: Sim, tmp_path: Path) -> None:
    settings = service_settings(simulator.url, tmp_path)
    (tmp_path / "jobs.sqlite3").mkdir()  # the job store cannot open: a directory where its file goes

    async def scenario() -> None:
        before = _running()
        with pytest.raises(sqlite3.OperationalError):
            await Services.start(settings, Telemetry.from_settings(settings))
        await asyncio.sleep(0)
        assert _running() - before == set()  # the webhooks dispatcher, started first, was stopped

    asyncio.run(scenario())
