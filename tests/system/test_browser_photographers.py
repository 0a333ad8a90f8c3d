"""The page as a photographer uses it, in Debian's chromium: sets and numbering, thumbnails, the credit
cost, an unknown order, a new order clearing the last result, and the phone layout.

Screenshots land in test-artifacts/ (page-sets-*.png, page-unknown-order.png, page-phone-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app import create_app
from app.config import DEMO_ORDER_ID
from harness.servers import serve
from tests.support.browser_helpers import ARTIFACTS, PHONE, demo_settings, images, visit, wait_for_demo_id

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

UNKNOWN = "00000000-0000-4000-8000-00000000dead"
THUMBS_LOADED = "() => [...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)"


# one browser and one demo service for the whole module: its tests stay on one parallel worker
pytestmark = pytest.mark.xdist_group("browser-photographers")


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("photographers")))) as url:
        yield url


def test_photos_show_before_downloading_and_sets_land_in_folders(
    browser: Browser, service_url: str, tmp_path: Path
) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#order-name")).to_have_text("Demo order: 3 sample rooms")
        expect(page.locator("#order-count")).to_have_text("3 photos, all ready")
        thumbs = page.locator("#thumbs img")
        expect(thumbs).to_have_count(3)
        page.wait_for_function(THUMBS_LOADED)
        assert thumbs.evaluate_all("imgs => imgs.map(i => i.naturalWidth)") == [320, 320, 320]

        note = page.locator("#credit-note")
        expect(note).to_have_attribute("data-cost", "free")
        page.check("input[name=set][value=mls]")
        page.check("input[name=set][value=original]")
        page.check("#names-sequence")
        expect(note).to_have_attribute("data-cost", "spend")
        expect(note).to_contain_text("up to 3 Autoenhance credits")
        expect(note).to_contain_text("3 photos × 1 full-size set (mls) = 3 full-size downloads")
        expect(page.locator("#curl-cmd")).to_contain_text("sets=full%2Cmls%2Coriginal&names=sequence")
        v.screenshot("page-sets-desktop.png")

        download, members = v.download("#download-btn", tmp_path)
        assert "sets=full%2Cmls%2Coriginal" in download.url and "names=sequence" in download.url
        for folder in ("full", "mls", "original"):
            numbered = sorted(n for n in members if n.startswith(f"{folder}/"))
            assert [n.split(" - ")[0] for n in numbered] == [f"{folder}/01", f"{folder}/02", f"{folder}/03"], numbered
        expect(page.locator("#download-msg")).to_contain_text("Download started")

        page.uncheck("input[name=set][value=full]")
        page.uncheck("input[name=set][value=mls]")
        page.uncheck("input[name=set][value=original]")
        expect(page.locator("#sets-msg")).to_have_text("Choose at least one of these.")
        expect(page.locator("#download-btn")).to_be_disabled()
        page.check("input[name=set][value=web]")
        expect(note).to_have_attribute("data-cost", "free")
        page.click("#more-options summary")
        page.click("label[for=format-avif]")
        page.fill("#max-width", "600")
        expect(page.locator("#curl-cmd")).to_contain_text("format=avif&max_width=600")
        assert v.errors == []
        assert v.foreign_requests(service_url) == []


def test_an_unknown_order_is_said_plainly_and_nothing_starts(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        downloads: list[str] = []
        page.on("download", lambda d: downloads.append(d.url))
        # The order's look-up is held back, so both buttons are clicked before Autoenhance answers,
        # as someone quick does: each must wait for the answer and start nothing.
        held: list[Route] = []
        page.route(f"**/orders/{UNKNOWN}/photos**", lambda route: held.append(route))
        page.fill("#order-id", UNKNOWN)
        for _ in range(200):
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the page never looked the order up"
        page.click("#download-btn")
        page.click("#job-btn")
        held[0].continue_()
        expect(page.locator("#order-status")).to_contain_text("Autoenhance has no order with this ID")
        expect(page.locator("#order-status")).to_have_attribute("data-kind", "error")
        expect(page.locator("#order-view")).to_be_hidden()
        expect(page.locator("#download-msg")).to_contain_text("Not started: Autoenhance has no order with this ID")
        expect(page.locator("#download-msg")).not_to_contain_text("Download started")
        expect(page.locator("#job-msg")).to_contain_text(
            "Could not prepare the download: Autoenhance has no order with this ID"
        )
        # once the answer is in, neither offers to download an order that does not exist
        expect(page.locator("#download-btn")).to_be_disabled()
        expect(page.locator("#job-btn")).to_be_disabled()
        v.screenshot("page-unknown-order.png")
        page.wait_for_timeout(500)
        assert downloads == []
        # a 404 is expected here; nothing else may fail
        assert [e for e in v.errors if "404" not in e] == []


def test_a_new_order_id_clears_the_previous_result(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.click("#job-btn")
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        page.fill("#order-id", UNKNOWN)
        expect(page.locator("#job-panel")).to_be_hidden()
        expect(page.locator("#job-msg")).to_have_text("")
        expect(page.locator("#thumbs img")).to_have_count(0)
        page.fill("#order-id", DEMO_ORDER_ID)
        expect(page.locator("#thumbs img")).to_have_count(3)
        expect(page.locator("#job-panel")).to_be_hidden()


def test_the_page_speaks_plainly(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        text = page.evaluate(
            "() => { const c = document.body.cloneNode(true); c.querySelector('#curl-cmd').remove();"
            " c.querySelectorAll('[hidden]').forEach(n => n.remove()); return c.innerText; }"
        )
        for jargon in ("X-API-Key", "X-Admin-Token", "Dev mode", "Prepare as job", "UUID", "job"):
            assert not re.search(rf"\b{re.escape(jargon)}\b", text), jargon
        for plain in ("Prepare a download link", "For listing sites (MLS)", "Originals", "Number the files"):
            assert plain in text


def test_on_a_phone_the_download_button_is_on_screen_without_scrolling(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#thumbs img")).to_have_count(3)
        page.wait_for_function(THUMBS_LOADED)

        def on_screen(selector: str) -> bool:
            box = page.locator(selector).bounding_box()
            assert box is not None
            return box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]

        assert page.evaluate("window.scrollY") == 0
        assert on_screen("#download-btn")
        page.screenshot(path=str(ARTIFACTS / "page-phone-first-screen.png"))
        page.locator("#names-sequence").scroll_into_view_if_needed()  # in the middle of the choices
        assert on_screen("#download-btn")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.check("input[name=set][value=mls]")
        page.screenshot(path=str(ARTIFACTS / "page-phone-choices.png"))
        v.screenshot("page-phone-full.png")
        expect(page.locator("#download-btn")).to_be_enabled()
        with page.expect_download(timeout=60_000) as info:
            page.locator("#download-btn").tap()
        assert "sets=full%2Cmls" in info.value.url
        assert v.errors == []


def test_thumbnails_and_the_order_need_the_service_key_when_one_is_set(browser: Browser, tmp_path: Path) -> None:
    app = create_app(demo_settings(tmp_path / "data", service_api_key="code-123"))
    with serve(app) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page, photos_shown=False)  # the photo look-up needs the code too
        expect(page.locator("#order-status")).to_contain_text("needs its service key")  # one name everywhere
        expect(page.locator("#key-details summary")).to_contain_text("Service key")
        expect(page.locator("#key-details")).to_have_attribute("open", "")
        page.fill("#service-key", "code-123")
        expect(page.locator("#thumbs img")).to_have_count(3)
        page.wait_for_function(THUMBS_LOADED)
        _, members = v.download("#download-btn", tmp_path)
        assert len(images(members, ".jpg")) == 3
