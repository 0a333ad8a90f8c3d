"""The page's tests: a demo-mode app, Debian's chromium driven by Python playwright, and a visit (one page
in a fresh browser context) that records what the page logged and requested.

Never `playwright install`: the browser comes from Debian (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from app.config import DEMO_ORDER_ID, Settings
from tests.conftest import service_settings
from tests.support.zipcheck import check_zip

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Download, Page

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
UNUSED_UPSTREAM = "http://127.0.0.1:9"  # demo mode never calls it
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def demo_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Demo mode: no API key, so the embedded simulator serves the demo order and no upstream URL is used."""
    return service_settings(UNUSED_UPSTREAM, data_dir, autoenhance_api_key=None, **overrides)


def missing_browser_reason() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install playwright; no `playwright install` needed)"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


def require_browser() -> None:
    """Skip without a browser, except on CI (CI=true), where a missing browser is a failure."""
    reason = missing_browser_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run on CI: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, with its background networking (updates, sync) off."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


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


def wait_for_demo_id(page: Page, *, photos_shown: bool = True) -> None:
    """The demo order is filled in and (where the page may look it up) its photos are shown, so the form
    below has stopped moving and clicks land where they aim."""
    expect(page.locator("#order-id")).to_have_value(DEMO_ORDER_ID)
    if photos_shown:
        expect(page.locator("#order-view")).to_be_visible()
