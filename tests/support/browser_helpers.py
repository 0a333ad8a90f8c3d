"""The page's tests: a demo-mode app, and Debian's chromium driven by Python playwright.

Never `playwright install`: the browser comes from Debian (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.config import Settings
from tests.conftest import service_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

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
