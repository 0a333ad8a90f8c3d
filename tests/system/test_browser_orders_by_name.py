"""The page with today's API, in Debian's chromium: an order found by its name, thumbnails in the chosen
photo order (which the download then asks for), and an upload with enhancement settings.

Screenshot: test-artifacts/page-order-search.png.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from app import create_app
from harness.servers import serve
from tests.support.browser_helpers import ARTIFACTS, demo_settings, visit, wait_for_demo_id

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.xdist_group("browser-orders-by-name")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    app = create_app(demo_settings(tmp_path_factory.mktemp("by-name")))
    with serve(app) as url:
        yield url, app


def test_an_order_is_found_by_its_name_and_shown_in_the_chosen_order(
    browser: Browser, demo: tuple[str, Any]
) -> None:
    url, app = demo
    sim = app.state.services.simulator
    from simulator import SeedImage

    wanted = sim.seed_order(
        name="12 Oak Street", images=[SeedImage(name="b-kitchen.jpg", size=500), SeedImage(name="a-front.jpg", size=500)]
    )
    sim.seed_order(name="3 Elm Road", images=[SeedImage(name="x.jpg", size=500)])
    with visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.fill("#order-id", "oak str")
        matches = page.locator("#order-matches button")
        expect(matches).to_have_count(1)
        expect(matches.first).to_contain_text("12 Oak Street")
        expect(page.locator("#order-id-msg")).to_contain_text("1 order named like “oak str”")
        expect(page.locator("#download-btn")).to_be_disabled()  # a name is not an order to download yet
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-order-search.png"), full_page=True)
        matches.first.click()
        expect(page.locator("#order-id")).to_have_value(wanted["order_id"])
        expect(page.locator("#order-matches button")).to_have_count(0)
        names = page.locator("#thumbs .preview-name")
        expect(names).to_have_text(["b-kitchen.jpg", "a-front.jpg"])  # as uploaded: the order's default

        page.select_option("#sort", "name")
        expect(names).to_have_text(["a-front.jpg", "b-kitchen.jpg"])
        page.check("#names-sequence")
        expect(page.locator("#curl-cmd")).to_contain_text("sort=name")

        page.fill("#order-id", "nowhere lane")
        expect(page.locator("#order-id-msg")).to_have_text("No order's name contains “nowhere lane”.")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (150, 110, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_an_upload_carries_the_chosen_settings(browser: Browser, demo: tuple[str, Any], tmp_path: Path) -> None:
    url, app = demo
    sim = app.state.services.simulator
    photo = tmp_path / "garden.jpg"
    photo.write_bytes(jpeg())
    with visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.set_input_files("#photos", str(photo))
        page.click("#upload-settings summary")
        page.select_option("#sky", "CLEAR")
        page.select_option("#enhance-type", "neutral")
        page.check("input[name=restage][value='grass=GREEN']")
        page.uncheck("#vertical-correction")
        page.click("#upload-btn")
        expect(page.locator("#create-msg")).to_contain_text("Created")
        order_id = page.locator("#order-id").input_value()
    image_ids = sim.orders[order_id].image_ids
    assert len(image_ids) == 1
    settings = sim.images[image_ids[0]].settings
    assert settings["restage"] == {"sky": "CLEAR", "grass": "GREEN"}
    assert settings["enhance_type"] == "neutral" and settings["vertical_correction"] is False
