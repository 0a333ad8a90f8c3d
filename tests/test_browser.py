"""The page in a real browser (Debian's chromium), against the real app in demo mode.

Skipped when playwright or /usr/bin/chromium is missing, except under CI=true where that fails.
Screenshots land in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from app import create_app
from app.config import DEMO_ORDER_ID
from tests.browser_helpers import ARTIFACTS, chromium, demo_settings, require_browser
from tests.servers import serve
from tests.zipcheck import check_zip

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Download, Page, Route

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("browser")))) as url:
        yield url


class Visit:
    """A page in a fresh browser context, with what it logged and every URL it requested."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":  # CSP violations and failed loads land here
            self.errors.append(message.text)

    def foreign_requests(self, base_url: str) -> list[str]:
        origin = urlsplit(base_url).netloc
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != origin
        ]

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / name, full_page=True, animations="disabled")

    def download(self, selector: str, into: Path) -> tuple[Download, dict[str, bytes]]:
        """Click `selector`, wait for the browser's download, save it, read it as a ZIP."""
        with self.page.expect_download(timeout=60_000) as info:
            self.page.click(selector)
        download = info.value
        assert download.failure() is None
        path = into / download.suggested_filename
        download.save_as(path)
        return download, check_zip(path.read_bytes())


@contextmanager
def visit(browser: Browser, url: str, **context_options: Any) -> Iterator[Visit]:
    context = browser.new_context(accept_downloads=True, **{"viewport": DESKTOP, **context_options})
    context.set_default_timeout(20_000)
    try:
        opened = Visit(context.new_page())
        opened.page.goto(url)
        yield opened
    finally:
        context.close()


def images(members: dict[str, bytes], suffix: str) -> list[str]:
    return [name for name in members if name.lower().endswith(suffix)]


def wait_for_demo_id(page: Page) -> None:
    expect(page.locator("#order-id")).to_have_value(DEMO_ORDER_ID)


def test_demo_order_downloads_as_a_streamed_zip(browser: Browser, service_url: str, tmp_path: Path) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#demo-notice")).to_be_visible()
        expect(page.locator("#demo-notice")).to_contain_text("built-in simulator")
        expect(page.locator("#mode-badge")).to_have_text("Demo mode")
        expect(page.locator("#credit-note")).to_contain_text("Free")
        expect(page.locator("#curl-cmd")).to_contain_text(f"{service_url}/orders/{DEMO_ORDER_ID}/images?format=jpeg")
        v.screenshot("page-desktop.png")

        download, members = v.download("#download-btn", tmp_path)
        # A navigation to the batch route itself (streamed by the browser), not a Blob built by the page.
        assert download.url.startswith(f"{service_url}/orders/{DEMO_ORDER_ID}/images?format=jpeg")
        assert download.suggested_filename.endswith(".zip")
        assert len(images(members, ".jpg")) == 3, sorted(members)

        page.click("label[for=format-png]")
        expect(page.locator("#curl-cmd")).to_contain_text("format=png")
        download, members = v.download("#download-btn", tmp_path)
        assert "format=png" in download.url
        assert len(images(members, ".png")) == 3, sorted(members)
        assert images(members, ".jpg") == []

        assert v.errors == []
        assert v.foreign_requests(service_url) == []


def test_credit_cost_is_spelled_out(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        note = page.locator("#credit-note")
        page.click("label:has(#preview)")  # preview off, dev mode off: full size, charged
        expect(note).to_have_attribute("data-cost", "spend")
        expect(note).to_contain_text("Spends credits")
        expect(page.locator("#curl-cmd")).to_contain_text("preview=false&dev_mode=false")
        page.click("label:has(#dev-mode)")
        expect(note).to_have_attribute("data-cost", "free")
        expect(page.locator("#curl-cmd")).to_contain_text("preview=false&dev_mode=true")


def test_copy_button_copies_the_exact_curl_command(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service_url)
        wait_for_demo_id(page)
        page.click("label[for=format-webp]")
        page.click("#copy-curl")
        expect(page.locator("#copy-curl")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.locator("#curl-cmd").inner_text()
        assert copied.startswith("curl -fSL -o autoenhance-7f3e9c1a.zip")
        assert f"'{service_url}/orders/{DEMO_ORDER_ID}/images?format=webp&preview=true&dev_mode=false'" in copied


def test_invalid_order_id_disables_the_buttons_and_says_why(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        order, message = page.locator("#order-id"), page.locator("#order-id-msg")

        order.fill("not-an-order")
        expect(page.locator("#download-btn")).to_be_disabled()
        expect(page.locator("#job-btn")).to_be_disabled()
        expect(order).to_have_attribute("aria-invalid", "true")
        expect(message).to_be_visible()
        expect(message).to_contain_text("only 0-9, a-f and dashes")

        order.fill(DEMO_ORDER_ID[:13])
        expect(message).to_contain_text("Not a complete order ID")
        expect(page.locator("#download-btn")).to_be_disabled()

        order.fill(f"  {DEMO_ORDER_ID.upper()} ")  # pasted with spaces and in capitals: still fine
        expect(page.locator("#download-btn")).to_be_enabled()
        expect(order).to_have_attribute("aria-invalid", "false")

        page.fill("#quality", "95")
        expect(page.locator("#quality-msg")).to_contain_text("1 to 90")
        expect(page.locator("#download-btn")).to_be_disabled()
        page.fill("#quality", "80")
        expect(page.locator("#download-btn")).to_be_enabled()
        expect(page.locator("#curl-cmd")).to_contain_text("quality=80")


def test_job_flow_shows_progress_then_downloads(browser: Browser, service_url: str, tmp_path: Path) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.click("#job-btn")
        expect(page.locator("#job-panel")).to_be_visible()
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        expect(page.locator("#job-state")).to_have_text("complete")
        progress = page.locator("#job-progress")
        assert progress.evaluate("p => p.value === p.max && p.max > 0")
        expect(page.locator("#job-total")).to_have_text("3")
        expect(page.locator("#job-done")).to_have_text("3")
        v.screenshot("page-job-complete.png")

        download, members = v.download("#job-download-btn", tmp_path)
        assert "/jobs/" in download.url
        assert len(images(members, ".jpg")) == 3, sorted(members)
        assert v.errors == []
        assert v.foreign_requests(service_url) == []


def test_sample_order_lands_in_the_order_field(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.click("#sample-btn")
        expect(page.locator("#create-msg")).to_contain_text("Created", timeout=30_000)
        new_id = page.locator("#order-id").input_value()
        assert UUID.match(new_id) and new_id != DEMO_ORDER_ID
        expect(page.locator("#download-btn")).to_be_enabled()
        assert v.errors == []


def test_photos_are_previewed_then_uploaded_as_an_order(browser: Browser, service_url: str) -> None:
    photos = sorted(SAMPLES.glob("*.jpg"))[:2]
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.set_input_files("#photos", photos)
        thumbs = page.locator("#previews img")
        expect(thumbs).to_have_count(2)
        assert all(src.startswith("blob:") for src in thumbs.evaluate_all("imgs => imgs.map(i => i.src)"))
        page.click(f"button[aria-label='Remove {photos[0].name}']")
        expect(thumbs).to_have_count(1)
        expect(page.locator("#upload-btn")).to_have_text("Create order from 1 photo")
        page.set_input_files("#photos", photos)  # picking again adds the new one and skips the duplicate
        expect(thumbs).to_have_count(2)
        v.screenshot("page-photos.png")

        page.click("#upload-btn")
        expect(page.locator("#create-msg")).to_contain_text("Created", timeout=30_000)
        assert UUID.match(page.locator("#order-id").input_value()) is not None
        assert page.locator("#order-id").input_value() != DEMO_ORDER_ID
        expect(page.locator("#previews")).to_be_hidden()
        assert v.errors == []


def test_job_failures_are_listed_with_reasons(browser: Browser, service_url: str) -> None:
    """The job status is stubbed in the browser: the page's rendering of failures is what is pinned."""
    status = {
        "job_id": "stub",
        "order_id": DEMO_ORDER_ID,
        "status": "complete",
        "total": 3,
        "downloaded": 2,
        "failed": 1,
        "error": None,
        "failures": [
            {"image_id": "i-3", "name": "garden.jpg", "reason": "still processing", "recovery": "Retry in a minute."}
        ],
    }
    started = {"job_id": "stub", "status_url": "/jobs/stub", "download_url": "/jobs/stub/download"}

    def fulfil(body: dict[str, Any], status_code: int = 200) -> Callable[[Route], None]:
        return lambda route: route.fulfill(status=status_code, json=body)

    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.route(f"**/orders/{DEMO_ORDER_ID}/jobs?*", fulfil(started, 202))
        page.route("**/jobs/stub", fulfil(status))
        page.click("#job-btn")
        expect(page.locator("#job-failures")).to_be_visible()
        expect(page.locator("#job-failure-list li")).to_have_count(1)
        expect(page.locator("#job-failure-list li")).to_contain_text("garden.jpg")
        expect(page.locator("#job-failure-list li")).to_contain_text("still processing")
        expect(page.locator("#job-failure-list li")).to_contain_text("Retry in a minute.")
        expect(page.locator("#job-msg")).to_contain_text("1 image could not be included")
        expect(page.locator("#job-download-btn")).to_have_attribute("href", "/jobs/stub/download")
        v.screenshot("page-job-failures.png")


def test_server_errors_show_their_detail(browser: Browser, service_url: str) -> None:
    detail = "Order not found upstream (stubbed)"
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.route("**/orders/*/jobs?*", lambda route: route.fulfill(status=404, json={"detail": detail}))
        page.click("#job-btn")
        expect(page.locator("#job-msg")).to_have_text(f"Could not run the job: {detail}")
        expect(page.locator("#job-msg")).to_have_attribute("data-kind", "error")


def test_phone_layout_fits_390px(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2) as v:
        wait_for_demo_id(v.page)
        assert v.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        v.screenshot("page-phone.png")
        assert v.errors == []


def test_service_key_runs_the_download_as_a_job(browser: Browser, tmp_path: Path) -> None:
    """A navigation cannot send X-API-Key: with a key the page runs the job flow and saves the result."""
    app = create_app(demo_settings(tmp_path / "data", service_api_key="page-test-key"))
    with serve(app) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.click("#job-btn")  # no key yet: the page explains and opens the key field
        expect(page.locator("#job-msg")).to_contain_text("service key")
        expect(page.locator("#key-details")).to_have_attribute("open", "")

        page.fill("#service-key", "page-test-key")
        expect(page.locator("#download-label")).to_have_text("Download ZIP (via job)")
        expect(page.locator("#curl-cmd")).to_contain_text('-H "X-API-Key: $SERVICE_API_KEY"')
        expect(page.locator("#curl-cmd")).not_to_contain_text("page-test-key")

        download, members = v.download("#download-btn", tmp_path)
        assert download.url.startswith("blob:")
        assert download.suggested_filename.endswith(".zip")
        assert len(images(members, ".jpg")) == 3, sorted(members)


def test_api_docs_render_offline_under_their_csp(browser: Browser, service_url: str) -> None:
    with visit(browser, f"{service_url}/docs") as v:
        expect(v.page.locator(".swagger-ui .info .title")).to_contain_text("Autoenhance Batch")
        health = v.page.locator(
            ".opblock", has=v.page.locator(".opblock-summary-path", has_text=re.compile(r"^/health$"))
        )
        health.locator(".opblock-summary-control").click()
        health.locator(".try-out__btn").click()
        health.locator(".execute").click()  # "Try it out" calls the API from the page, under the docs CSP
        expect(health.locator(".live-responses-table")).to_contain_text('"status": "ok"')
        assert v.errors == []
        assert v.foreign_requests(service_url) == []
