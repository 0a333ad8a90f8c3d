"""The page in a first hour, at a laptop's 1280x900 and on a phone: Download ZIP on screen without
scrolling, one message about the order ID at a time, and one Download ZIP with a link to copy once
a download is prepared."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app import create_app
from app.config import DEMO_ORDER_ID
from harness.servers import serve
from tests.support.browser_helpers import DESKTOP, PHONE, demo_settings, images, visit, wait_for_demo_id
from tests.support.zipcheck import check_zip

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

UNKNOWN = "00000000-0000-4000-8000-00000000dead"
SIZES: dict[str, dict[str, Any]] = {
    "1280x900": {},
    "phone": {"viewport": PHONE, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("first-hour")))) as url:
        yield url


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


def _shown_messages(page: Page) -> list[str]:
    """The messages about the order ID on screen: under the field, and the lookup's below the photos."""
    texts = [page.locator(selector).inner_text().strip() for selector in ("#order-id-msg", "#order-status")]
    return [text for text in texts if text]


@pytest.mark.parametrize("size", SIZES)
def test_a_failed_lookup_replaces_the_valid_id_tick(browser: Browser, service_url: str, size: str) -> None:
    with visit(browser, service_url, **SIZES[size]) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#order-id-msg")).to_have_text("Looks like a valid order ID.")
        page.fill("#order-id", UNKNOWN)  # well formed, so first ticked; then Autoenhance answers 404
        expect(page.locator("#order-status")).to_contain_text("Autoenhance has no order with this ID")
        expect(page.locator("#order-id-msg")).to_have_text("")
        expect(page.locator("#order-id")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#download-btn")).to_be_disabled()  # no order: nothing to download
        expect(page.locator("#job-btn")).to_be_disabled()
        page.locator("#order-id").scroll_into_view_if_needed()
        page.screenshot(path=f"/tmp/fh-order-id-{size}.png")
        page.click("#more-options summary")
        page.fill("#quality", "80")  # the form re-validates: the tick must not come back over the answer
        expect(page.locator("#order-id-msg")).to_have_text("")
        assert _shown_messages(page) == [page.locator("#order-status").inner_text().strip()]
        page.fill("#order-id", DEMO_ORDER_ID)  # and the other way round: a found order clears the red
        expect(page.locator("#order-view")).to_be_visible()
        assert _shown_messages(page) == ["Looks like a valid order ID."]
        expect(page.locator("#order-id")).to_have_attribute("aria-invalid", "false")
        expect(page.locator("#download-btn")).to_be_enabled()
        assert [e for e in v.errors if "404" not in e] == []


DOWNLOAD_ZIP = re.compile(r"^\s*Download ZIP\s*$")


def _download_zip_controls(page: Page) -> int:
    return page.locator("button:visible, a:visible").filter(has_text=DOWNLOAD_ZIP).count()


@pytest.mark.parametrize("size", SIZES)
def test_a_prepared_download_has_one_download_button_and_a_link_to_copy(
    browser: Browser, service_url: str, size: str
) -> None:
    with visit(browser, service_url, **SIZES[size]) as v:
        page = v.page
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service_url)
        wait_for_demo_id(page)
        assert _download_zip_controls(page) == 1
        page.click("#job-btn")
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        assert _download_zip_controls(page) == 1  # the prepared file's, not the form's as well
        link = page.locator("#job-link")
        expect(link).to_be_visible()
        expect(link).to_have_attribute("readonly", "")
        expect(page.get_by_label("Link to this ZIP")).to_have_value(
            re.compile(rf"^{re.escape(service_url)}/v1/jobs/[0-9a-f-]{{36}}/download$")
        )
        page.locator("#job-panel").scroll_into_view_if_needed()
        page.screenshot(path=f"/tmp/fh-job-link-{size}.png")
        page.click("#job-copy-link")
        expect(page.locator("#job-copy-link")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == link.input_value()
        answer = httpx.get(copied, timeout=30)  # the link works as copied, outside the page
        assert answer.status_code == 200, answer.text
        assert len(images(check_zip(answer.content), ".jpg")) == 3
        page.click("label:has(#names-sequence)")  # other options: another ZIP, so the form's button is back
        expect(page.locator("#job-panel")).to_be_hidden()
        expect(page.locator("#download-btn")).to_be_visible()
        assert _download_zip_controls(page) == 1
        assert v.errors == []
