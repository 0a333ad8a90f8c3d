"""The page at a laptop's 1280x900: Download ZIP is on screen without scrolling, as on a phone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app import create_app
from harness.servers import serve
from tests.support.browser_helpers import DESKTOP, demo_settings, visit, wait_for_demo_id

if TYPE_CHECKING:
    from playwright.sync_api import Browser

THUMBS_LOADED = "() => [...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)"


def test_download_zip_is_visible_at_1280x900_without_scrolling(browser: Browser, tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path / "data"))) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.wait_for_function(THUMBS_LOADED)
        assert page.evaluate("() => window.scrollY") == 0
        box = page.locator("#download-btn").bounding_box()
        assert box is not None
        assert box["y"] >= 0 and box["y"] + box["height"] <= DESKTOP["height"], box  # in the first screen
        page.screenshot(path="/tmp/fh-page-1280.png")
        page.locator("#download-btn").click(trial=True)  # nothing covers it: a click would land on it
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        box = page.locator("#download-btn").bounding_box()
        assert box is not None and box["y"] + box["height"] <= DESKTOP["height"]  # and at the page's end
