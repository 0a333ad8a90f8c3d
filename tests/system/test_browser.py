"""The page in a real browser (Debian's chromium), against the real app in demo mode.

Skipped when playwright or /usr/bin/chromium is missing, except under CI=true where that fails.
Screenshots land in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app import create_app
from app.config import DEMO_ORDER_ID
from harness.servers import serve
from tests.support.browser_helpers import PHONE, demo_settings, images, visit, wait_for_demo_id
from tests.support.zipcheck import check_zip

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

# one browser and one demo service for the whole module: its tests stay on one parallel worker
pytestmark = pytest.mark.xdist_group("browser")

SAMPLES = Path(__file__).resolve().parents[2] / "simulator" / "sample_images"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("browser")))) as url:
        yield url


def test_demo_order_downloads_as_a_streamed_zip(browser: Browser, service_url: str, tmp_path: Path) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#demo-notice")).to_be_visible()
        expect(page.locator("#demo-notice")).to_contain_text("built-in simulator")
        expect(page.locator("#mode-badge")).to_have_text("Demo mode")
        expect(page.locator("#credit-note")).to_contain_text("Free")
        expect(page.locator("#curl-cmd")).to_contain_text(f"{service_url}/v1/orders/{DEMO_ORDER_ID}/images?format=jpeg")
        expect(page.locator("#recent-list button").first).to_be_visible()
        v.screenshot("page-desktop.png")

        download, members = v.download("#download-btn", tmp_path)
        # A navigation to the batch route itself (streamed by the browser), not a Blob built by the page.
        assert download.url.startswith(f"{service_url}/v1/orders/{DEMO_ORDER_ID}/images?format=jpeg")
        assert download.suggested_filename == "Demo order_ 3 sample rooms.zip"  # the order's name, made safe
        assert sorted(members) == ["_manifest.json", "exterior.jpg", "kitchen.jpg", "living-room.jpg"]

        page.click("#more-options summary")  # format, size and quality are folded away by default
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
        expect(note).to_contain_text("Free in this demo")  # not "Spends credits" beside "Nothing is charged"
        expect(note).to_contain_text("with a live Autoenhance key this would spend")
        expect(note).not_to_contain_text("Spends credits")
        expect(page.locator("#curl-cmd")).to_contain_text("preview=false&dev_mode=false")
        page.click("label:has(#dev-mode)")
        expect(note).to_have_attribute("data-cost", "free")
        expect(page.locator("#curl-cmd")).to_contain_text("preview=false&dev_mode=true")


def test_copy_button_copies_the_exact_curl_command(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service_url)
        wait_for_demo_id(page)
        page.click("#more-options summary")
        page.click("label[for=format-webp]")
        page.click("#copy-curl")
        expect(page.locator("#copy-curl")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.locator("#curl-cmd").inner_text()
        assert copied.startswith("curl -fSL -o autoenhance-7f3e9c1a.zip")
        assert f"'{service_url}/v1/orders/{DEMO_ORDER_ID}/images?format=webp&preview=true&dev_mode=false'" in copied


def test_invalid_order_id_disables_the_buttons_and_says_why(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        order, message = page.locator("#order-id"), page.locator("#order-id-msg")

        # the field also takes an order's name: text that is not an ID is searched, and names no order here
        order.fill("not-an-order")
        expect(page.locator("#download-btn")).to_be_disabled()
        expect(page.locator("#job-btn")).to_be_disabled()
        expect(message).to_be_visible()
        expect(message).to_have_text("No order's name contains “not-an-order”.")
        expect(order).to_have_attribute("aria-invalid", "true")

        order.fill(DEMO_ORDER_ID[:13])  # hex digits and dashes: the start of an ID, not a name
        expect(message).to_contain_text("Not a complete order ID")
        expect(order).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#download-btn")).to_be_disabled()
        expect(page.locator("#job-btn")).to_be_disabled()

        order.fill(f"  {DEMO_ORDER_ID.upper()} ")  # pasted with spaces and in capitals: still fine
        expect(page.locator("#download-btn")).to_be_enabled()
        expect(order).to_have_attribute("aria-invalid", "false")

        page.click("#more-options summary")
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
        expect(page.locator("#job-state")).to_have_text("completed")
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
        "status": "completed_with_errors",
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
    detail = "Autoenhance is unavailable (stubbed)"
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.route("**/orders/*/jobs?*", lambda route: route.fulfill(status=502, json={"detail": detail}))
        page.click("#job-btn")
        expect(page.locator("#job-msg")).to_have_text(f"Could not prepare the download: {detail}")
        expect(page.locator("#job-msg")).to_have_attribute("data-kind", "error")


def test_phone_layout_fits_390px(browser: Browser, service_url: str) -> None:
    with visit(browser, service_url, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2) as v:
        wait_for_demo_id(v.page)
        expect(v.page.locator("#recent-list button").first).to_be_visible()
        assert v.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        clipped = v.page.evaluate(
            "[...document.querySelectorAll('main *')].filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1"
            " && getComputedStyle(e).overflowX !== 'visible' && getComputedStyle(e).textOverflow !== 'ellipsis'"
            " && !e.matches('input, pre, code, .visually-hidden'))"
            ".map(e => e.id || e.className)"
        )
        assert clipped == [], clipped  # nothing scrolls sideways inside the page either
        v.screenshot("page-phone.png")
        assert v.errors == []


def test_service_key_runs_the_download_as_a_job(browser: Browser, tmp_path: Path) -> None:
    """A navigation cannot send X-API-Key: with a key the page runs the job flow and saves the result."""
    app = create_app(demo_settings(tmp_path / "data", service_api_key="page-test-key"))
    with serve(app) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page, photos_shown=False)  # the photo look-up needs the key too
        page.click("#job-btn")  # no key yet: the page explains and opens the key field
        expect(page.locator("#job-msg")).to_contain_text("service key")
        expect(page.locator("#key-details")).to_have_attribute("open", "")

        page.fill("#service-key", "page-test-key")
        expect(page.locator("#download-label")).to_have_text("Download ZIP (prepared first)")
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


# -- recent orders, keyboard, contrast, drag and drop, live progress ------------------------------

CONTRAST_SCRIPT = """
() => {
  const parse = (value) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(value);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const luminance = (c) => {
    const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  };
  const background = (node) => {
    const layers = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      const bg = parse(getComputedStyle(n).backgroundColor);
      if (bg && bg.a > 0) layers.push(bg);
      if (bg && bg.a === 1) break;
    }
    let color = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const failures = [];
  let checked = 0;
  for (const node of document.querySelectorAll("body *")) {
    const text = [...node.childNodes].filter((c) => c.nodeType === 3).map((c) => c.textContent).join("").trim();
    if (!text) continue;
    const style = getComputedStyle(node);
    const box = node.getBoundingClientRect();
    if (style.visibility !== "visible" || box.width <= 1 || box.height <= 1 || node.closest("[hidden], [aria-hidden=true]")) continue;
    if (node.closest("button:disabled")) continue; // WCAG exempts inactive controls
    const bg = background(node);
    const fg = over(parse(style.color), bg);
    const [light, dark] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (light + 0.05) / (dark + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) failures.push(`${node.tagName.toLowerCase()}#${node.id}.${node.className}: "${text.slice(0, 40)}" ${ratio.toFixed(2)}`);
  }
  return { checked, failures };
}
"""


def assert_readable_contrast(page: Page) -> None:
    result = page.evaluate(CONTRAST_SCRIPT)
    assert result["checked"] > 30, result  # it really looked at the page's text
    assert result["failures"] == [], result["failures"]


def seed_orders(app: Any, count: int) -> list[str]:
    simulator = app.state.services.simulator
    return [str(simulator.seed_order(name=f"Listing {n}")["order_id"]) for n in range(count)]


def test_recent_orders_are_listed_paged_and_pick_an_order(browser: Browser, tmp_path: Path) -> None:
    app = create_app(demo_settings(tmp_path / "data"))
    with serve(app) as url:
        created = seed_orders(app, 6)  # with the demo order: 7, newest first
        with visit(browser, url) as v:
            page = v.page
            wait_for_demo_id(page)
            items = page.locator("#recent-list button")
            expect(items).to_have_count(5)
            expect(items.first).to_contain_text("Listing 5")
            expect(page.locator("#recent-msg")).to_have_text("5 orders shown, newest first.")
            page.click("#recent-more")
            expect(items).to_have_count(7)
            expect(items.last).to_contain_text("Demo order")
            expect(page.locator("#recent-more")).to_be_hidden()  # that was the last page
            items.nth(2).click()
            expect(page.locator("#order-id")).to_have_value(created[3])
            expect(items.nth(2)).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#download-btn")).to_be_enabled()
            expect(page.locator("#curl-cmd")).to_contain_text(created[3])
            assert v.errors == []


def test_recent_orders_wait_for_the_admin_token(browser: Browser, tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path / "data", admin_token="page-admin"))) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#recent-msg")).to_contain_text("type the admin token")
        expect(page.locator("#recent-list button")).to_have_count(0)
        page.fill("#admin-token", "page-admin")
        expect(page.locator("#recent-list button")).to_have_count(1)
        expect(page.locator("#recent-list button")).to_contain_text("Demo order")


def test_keyboard_alone_reaches_and_starts_the_download(browser: Browser, service_url: str, tmp_path: Path) -> None:
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        page.keyboard.press("Enter")  # skip to content
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "download-btn":
                break
        else:
            pytest.fail("Tab never reached the Download ZIP button")
        ring = page.evaluate("getComputedStyle(document.activeElement).boxShadow")
        assert ring and ring != "none", "the focused button shows no focus ring"
        with page.expect_download(timeout=60_000) as info:
            page.keyboard.press("Enter")
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        assert len(images(check_zip(path.read_bytes()), ".jpg")) == 3


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_is_readable(browser: Browser, service_url: str, scheme: str) -> None:
    with visit(browser, service_url, color_scheme=scheme) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#recent-list button").first).to_be_visible()
        assert_readable_contrast(page)
        page.click("label:has(#preview)")  # the "spends credits" warning colours
        page.click("#more-options summary")
        page.fill("#quality", "99")  # and an error message
        assert_readable_contrast(page)
        page.fill("#quality", "")
        page.click("#job-btn")  # the job panel and its states
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        assert_readable_contrast(page)
        v.screenshot(f"page-{scheme}-job.png")
        page.evaluate("document.querySelector('.lede').style.color = getComputedStyle(document.body).backgroundColor")
        failures = page.evaluate(CONTRAST_SCRIPT)["failures"]
        assert len(failures) == 1 and "lede" in failures[0]  # the check does catch unreadable text


def test_photos_dropped_on_the_zone_are_previewed(browser: Browser, service_url: str) -> None:
    photo = sorted(SAMPLES.glob("*.jpg"))[0]
    with visit(browser, service_url) as v:
        page = v.page
        wait_for_demo_id(page)
        data = list(photo.read_bytes())
        transfer = page.evaluate_handle(
            """([name, bytes]) => {
                const dt = new DataTransfer();
                dt.items.add(new File([new Uint8Array(bytes)], name, { type: "image/jpeg" }));
                return dt;
            }""",
            [photo.name, data],
        )
        page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
        expect(page.locator("#dropzone")).to_have_class(re.compile(r"\bdragging\b"))
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
        expect(page.locator("#dropzone")).not_to_have_class(re.compile(r"\bdragging\b"))
        thumbs = page.locator("#previews img")
        expect(thumbs).to_have_count(1)
        # the preview really decodes (waited for: decoding finishes after the element appears, later on a busy machine)
        page.wait_for_function("() => { const img = document.querySelector('#previews img'); return img.complete && img.naturalWidth > 0 }")
        expect(page.locator("#previews")).to_contain_text(photo.name)
        page.click("#upload-btn")
        expect(page.locator("#create-msg")).to_contain_text("Created", timeout=30_000)
        assert v.errors == []


def test_job_progress_bar_moves_while_the_job_runs(browser: Browser, tmp_path: Path) -> None:
    app = create_app(demo_settings(tmp_path / "data", demo_latency_seconds=0.7, max_concurrent_downloads=1))
    with serve(app) as url, visit(browser, url) as v:
        page = v.page
        wait_for_demo_id(page)
        page.evaluate(
            """() => {
                window.progressSeen = [];
                const bar = document.getElementById("job-progress");
                new MutationObserver(() => window.progressSeen.push([bar.value, bar.max]))
                    .observe(bar, { attributes: true, attributeFilter: ["value", "max"] });
            }"""
        )
        page.click("#job-btn")
        expect(page.locator("#job-state")).to_have_text("running", timeout=30_000)
        v.screenshot("page-job-running.png")
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        seen = page.evaluate("window.progressSeen")
        assert any(max_ == 3 and 0 < value < 3 for value, max_ in seen), seen  # a step between empty and full
        assert seen[-1] == [3, 3]
        expect(page.locator("#job-done")).to_have_text("3")
        expect(page.locator("#job-failed")).to_have_text("0")
        expect(page.locator("#job-total")).to_have_text("3")


def test_a_real_partial_job_lists_the_missing_image_and_why(browser: Browser, tmp_path: Path) -> None:
    """No stub: the embedded simulator loses one demo image, the real job reports it, the page shows it."""
    from simulator import Fault

    app = create_app(demo_settings(tmp_path / "data"))
    with serve(app) as url:
        simulator = app.state.services.simulator
        lost = simulator.order_json(simulator.get_order(DEMO_ORDER_ID))["images"][1]
        simulator.add_fault(Fault(kind="asset_404", image_id=lost["image_id"]))
        with visit(browser, url) as v:
            page = v.page
            wait_for_demo_id(page)
            page.click("#job-btn")
            expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
            expect(page.locator("#job-done")).to_have_text("2")
            expect(page.locator("#job-failed")).to_have_text("1")
            expect(page.locator("#job-msg")).to_contain_text("1 image could not be included")
            failure = page.locator("#job-failure-list li")
            expect(failure).to_have_count(1)
            expect(failure).to_contain_text(Path(lost["image_name"]).stem)
            expect(failure).to_contain_text("404")
            v.screenshot("page-job-partial.png")
            _, members = v.download("#job-download-btn", tmp_path)
            assert len(images(members, ".jpg")) == 2
            assert "_download_report.txt" in members


AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def axe_violations(page: Page, base_url: str) -> list[str]:
    """Run axe-core in the page: served by the test at a same-origin URL, so the page's CSP allows it."""
    page.route(f"{base_url}/__test-axe.js", lambda route: route.fulfill(path=AXE, content_type="text/javascript"))
    page.add_script_tag(url=f"{base_url}/__test-axe.js")
    result = page.evaluate("tags => axe.run(document, { runOnly: { type: 'tag', values: tags } })", AXE_TAGS)
    assert result["passes"], "axe checked nothing"
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
    ]


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_axe_finds_no_accessibility_violations(browser: Browser, service_url: str, viewport: str) -> None:
    options: dict[str, Any] = {"viewport": PHONE, "is_mobile": True, "has_touch": True} if viewport == "phone" else {}
    with visit(browser, service_url, **options) as v:
        page = v.page
        wait_for_demo_id(page)
        expect(page.locator("#recent-list button").first).to_be_visible()
        page.set_input_files("#photos", sorted(SAMPLES.glob("*.jpg"))[:1])  # previews and their remove button
        page.click("#job-btn")  # the job panel, progress bar and download button
        expect(page.locator("#job-download-btn")).to_be_visible(timeout=60_000)
        assert axe_violations(page, service_url) == []
        page.evaluate("document.querySelector('label[for=admin-token]').remove()")
        found = page.evaluate("axe.run(document, { runOnly: ['label'] })")["violations"]
        assert [v["id"] for v in found] == ["label"]  # axe really inspects this page
