"""The page in Debian's chromium against a live-mode service that does not let anonymous callers
spend credits: a full-resolution download is not started, and the page says why and how to enable it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.browser_helpers import visit
from tests.support.jobs_helpers import seed
from tests.support.photos import photo

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.xdist_group("browser-credits")


def test_a_paid_download_the_service_refuses_is_explained_not_started(
    browser: Browser, simulator: Sim, start_service: Callable[..., Service]
) -> None:
    service = start_service()  # live mode (a key to the simulator), no SERVICE_API_KEY, no ALLOW_ANONYMOUS_CREDITS
    order_id = seed(simulator, SeedImage(name="front.jpg", data=photo(1600, 1000, (180, 120, 90))))
    with visit(browser, service.url) as v:
        page = v.page
        page.fill("#order-id", order_id)
        expect(page.locator("#order-view")).to_be_visible()
        page.click("label:has(#preview)")  # previews off: full resolution, which spends credits
        page.click("#download-btn")
        message = page.locator("#download-msg")
        expect(message).to_contain_text("Not started")
        expect(message).to_contain_text("ALLOW_ANONYMOUS_CREDITS=true")
        assert not [url for url in v.requests if "/images?" in url]  # no download was attempted
        page.click("label:has(#preview)")  # previews again: free, so it downloads
        _, members = v.download("#download-btn", service.settings.data_dir.parent)
    assert "front.jpg" in members
    assert simulator.state.stats["credits_spent"] == 0
