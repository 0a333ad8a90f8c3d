"""Choosing photos on the page, in a real browser (Debian's chromium) against the demo service: a checkbox
on every thumbnail, all ticked by default, "Select none/all", and the download follows the choice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app import create_app
from harness.servers import serve
from tests.support.browser_helpers import ARTIFACTS, demo_settings, visit, wait_for_demo_id

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("browser-choose")))) as url:
        yield url


def test_thumbnails_have_checkboxes_and_the_download_follows_them(
    browser: Browser, service_url: str, tmp_path: Path
) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        boxes = page.locator("#thumbs input.thumb-pick")
        expect(boxes).to_have_count(3)
        for index in range(3):
            expect(boxes.nth(index)).to_be_checked()
        expect(page.locator("#chosen-count")).to_have_text("3 of 3 photos chosen")

        page.click("#select-none")
        expect(page.locator("#chosen-count")).to_have_text("0 of 3 photos chosen")
        expect(page.locator("#download-btn")).to_be_disabled()
        expect(page.locator("#order-status")).to_contain_text("Choose at least one photo")

        page.click("#select-all")
        expect(page.locator("#download-btn")).to_be_enabled()
        expect(page.locator("#curl-cmd")).not_to_contain_text("images=")

        page.get_by_label("Include kitchen.jpg").uncheck()
        expect(page.locator("#chosen-count")).to_have_text("2 of 3 photos chosen")
        expect(page.locator("#curl-cmd")).to_contain_text("images=")
        page.click("label:has(#preview)")  # full size: the credit count is of the chosen photos
        expect(page.locator("#credit-note")).to_contain_text("up to 2 Autoenhance credits")
        page.click("label:has(#preview)")
        v.screenshot("page-choose-photos.png")
        shutil.copy(ARTIFACTS / "page-choose-photos.png", "/tmp/page-choose-photos.png")

        download, members = v.download("#download-btn", tmp_path)
        assert "images=" in download.url
        assert sorted(members) == ["_manifest.json", "exterior.jpg", "living-room.jpg"]
        assert v.errors == []


def test_a_name_template_is_checked_on_the_page_and_names_the_files(
    browser: Browser, service_url: str, tmp_path: Path
) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.fill("#name-template", "{n:1}-print-{address}")
        expect(page.locator("#name-template-msg")).to_contain_text("{address} is not a field")
        expect(page.locator("#download-btn")).to_be_disabled()
        page.fill("#name-template", "{n:1}-print-{order:slug}")
        expect(page.locator("#download-btn")).to_be_enabled()
        expect(page.locator("#curl-cmd")).to_contain_text("template=")
        v.screenshot("page-name-template.png")
        download, members = v.download("#download-btn", tmp_path)
        assert sorted(members) == [f"{n}-print-demo-order-3-sample-rooms.jpg" for n in (1, 2, 3)] + ["_manifest.json"]
        assert "template=" in download.url
        assert v.errors == []


def test_the_operators_sets_appear_on_the_page(browser: Browser, tmp_path: Path) -> None:
    sets = tmp_path / "sets.json"
    sets.write_text('{"sets": [{"name": "board", "description": "1280x960, under 125 KB", "max_width": 1280, '
                    '"max_bytes": 125000}]}')  # fmt: skip
    with serve(create_app(demo_settings(tmp_path / "data", delivery_sets=sets))) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        board = page.locator("input[name=set][value=board]")
        expect(board).to_have_count(1)
        expect(page.locator("label:has(input[value=board])")).to_contain_text("1280x960, under 125 KB")
        page.click("label:has(input[value=board])")
        expect(page.locator("#credit-note")).to_have_attribute("data-cost", "spend")  # full size, from its definition
        expect(page.locator("#curl-cmd")).to_contain_text("board")
        v.screenshot("page-operator-sets.png")
        assert v.errors == []
