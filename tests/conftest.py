"""Shared fixtures: the simulator and the service, each on a real loopback port.

`simulator` is a live Autoenhance stand-in; `start_service(**overrides)` serves the real app
pointed at it (settings passed explicitly, never read from a developer's .env).

`make test` runs the suite in parallel workers (pytest-xdist, `--dist loadgroup`): every server takes
its own ephemeral port, every DATA_DIR is a tmp_path, every Redis key lives under its own prefix, so
tests share nothing but the machine. Tests marked `heavy` are handed out first, so no worker is left
alone with a long one at the end; modules whose tests share one costly module fixture (a browser, a
cluster of processes) are kept on one worker with `xdist_group`. Tests marked `alone` count what the
whole process holds (sockets, tasks) or how many requests overlap upstream: CPU taken by other tests
changes what they see, so `make test` runs them afterwards, one at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app import create_app
from app.config import Settings
from app.core.network.tls import client_context
from harness.servers import serve
from harness.service import TEST_KEY, service_settings
from simulator import SimulatorState
from simulator import create_app as create_simulator
from tests.support.cluster import redis_prefix as _redis_prefix

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.hookimpl(trylast=True)  # after xdist's own hook, which tags grouped tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy tests first (a stable sort: the rest keep their order); every worker sorts alike.

    Under `--dist loadgroup` it also checks that xdist tagged the grouped tests: pytest 9.2 stopped
    honouring the tag (pytest-xdist issue 1386), and then every worker quietly builds its own cluster
    and browser, which cost the suite minutes before anyone saw it."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
    if config.getoption("loadgroup", default=False):
        lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:  # an error raised here is swallowed by xdist; the fixture below reports it on every test
            config.stash[_UNGROUPED] = lost[0]


_UNGROUPED = pytest.StashKey[str]()


@pytest.fixture(scope="session", autouse=True)
def _groups_are_honoured(pytestconfig: pytest.Config) -> None:
    if _UNGROUPED in pytestconfig.stash:
        pytest.fail(f"xdist_group is not honoured by this pytest and pytest-xdist: {pytestconfig.stash[_UNGROUPED]}")


@dataclass
class Sim:
    url: str
    state: SimulatorState


@dataclass
class Service:
    url: str
    settings: Settings
    app: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of the service; it shares the process's TLS context (building one costs ~20 ms)."""
        return httpx.Client(base_url=self.url, **({"timeout": 60, "verify": client_context()} | kwargs))


@pytest.fixture
def sim_state() -> SimulatorState:
    return SimulatorState(api_keys={TEST_KEY})


@pytest.fixture
def simulator(sim_state: SimulatorState) -> Iterator[Sim]:
    with serve(create_simulator(sim_state)) as url:
        yield Sim(url, sim_state)


@pytest.fixture
def start_service(simulator: Sim, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: `start_service(cache_ttl_seconds=0, ...)` serves a configured app; stopped at teardown."""
    stack = contextlib.ExitStack()

    def start(**overrides: Any) -> Service:
        data_dir = overrides.pop("data_dir", tmp_path / "data")
        settings = service_settings(simulator.url, data_dir, **overrides)
        app = create_app(settings)
        url = stack.enter_context(serve(app))
        return Service(url, settings, app)

    with stack:
        yield start


@pytest.fixture
def service(start_service: Callable[..., Service]) -> Service:
    return start_service()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh Redis key prefix, its keys deleted afterwards; skips without Redis (fails under CI=true)."""
    with _redis_prefix() as prefix:
        yield prefix


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, one per test module (module scope); skips without it (fails under CI=true)."""
    # imported here, not at the top: browser_helpers builds on this module's service_settings
    from tests.support.browser_helpers import chromium, require_browser

    require_browser()
    with chromium() as launched:
        yield launched
