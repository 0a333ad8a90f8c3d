"""Share links over real HTTP: made with the service key, opened without it (a plain page, then the ZIP
with Range), refused with a plain 410 once expired or revoked, signed with a secret kept under the
data dir, listed in the job's webhook; with S3 results the download redirects to a presigned URL."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from simulator import SeedImage
from tests.conftest import Service, Sim
from tests.support.cluster import moto_s3
from tests.support.jobs_helpers import poll, seed
from tests.support.webhook_receiver import FAST_RETRIES, serving
from tests.support.zipcheck import check_zip

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser

KEY = "service-key-for-share-tests"
HOSTILE = '<script>alert(1)</script> & "Oak"'


def _finished_job(client: httpx.Client, order_id: str, **params: object) -> dict[str, object]:
    job = client.post(f"/orders/{order_id}/jobs", params=params)
    assert job.status_code == 202, job.text
    return poll(client, job.json()["job_id"], lambda s: s["status"] in ("completed", "completed_with_errors", "failed"))


def test_a_share_link_opens_a_page_and_the_zip_without_the_key(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    order_id = seed(simulator, SeedImage(name="front.jpg", size=80_000), SeedImage(name="back.jpg"), name=HOSTILE)
    service = start_service(service_api_key=KEY)
    with service.client(headers={"X-API-Key": KEY}) as client, service.client() as anyone:
        job = _finished_job(client, order_id)
        assert anyone.post(f"/jobs/{job['job_id']}/share").status_code == 401  # making one needs the key
        made = client.post(f"/jobs/{job['job_id']}/share", params={"expires_in": 3600})
        assert made.status_code == 201, made.text
        link = made.json()["url"]
        assert link.startswith(f"{service.url}/share/")

        page = anyone.get(link)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Oak&quot;" in page.text
        assert page.text.count("<img ") == 2 and 'href="' in page.text and ">Download<" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        thumb = page.text.split('<img src="', 1)[1].split('"', 1)[0]
        assert anyone.get(f"{service.url}/share/{thumb}").status_code == 200
        forged = thumb.rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAAAAAAAA"
        assert anyone.get(f"{service.url}/share/{forged}").status_code == 404

        whole = anyone.get(f"{link}/download")
        assert whole.status_code == 200 and whole.headers["content-type"] == "application/zip"
        assert sorted(check_zip(whole.content)) == ["_manifest.json", "back.jpg", "front.jpg"]
        part = anyone.get(f"{link}/download", headers={"Range": "bytes=100-999"})
        assert part.status_code == 206 and part.content == whole.content[100:1000]

        assert anyone.get(link[:-3] + "abc").status_code == 404  # a mangled link: not ours
        listed = client.get(f"/jobs/{job['job_id']}").json()["shares"]
        assert [s["revoked"] for s in listed] == [False] and "url" not in listed[0]

        revoked = client.delete(f"/jobs/{job['job_id']}/share/{made.json()['share_id']}")
        assert revoked.status_code == 200
        for url in (link, f"{link}/download"):
            gone = anyone.get(url)
            assert gone.status_code == 410 and gone.headers["content-type"].startswith("text/plain")
            assert "withdrawn" in gone.text
    assert (service.settings.data_dir / "share_secret").stat().st_mode & 0o777 == 0o600


def test_an_expired_link_is_410_and_links_survive_a_restart(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    data = tmp_path / "shared-data"
    first = start_service(data_dir=data)
    with first.client() as client:
        job = _finished_job(client, order_id)
        short = client.post(f"/jobs/{job['job_id']}/share", params={"expires_in": 60}).json()
        lasting = client.post(f"/jobs/{job['job_id']}/share").json()
        assert lasting["expires_at"] > time.strftime("%Y-%m-%dT", time.gmtime(time.time() + 6 * 86400))
        assert client.post(f"/jobs/{job['job_id']}/share", params={"expires_in": 5}).status_code == 422
    # the short link's time runs out (its record's expiry moved to the past, as time would)
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        [(raw,)] = db.execute("SELECT shares FROM jobs WHERE job_id = ?", (job["job_id"],)).fetchall()
        shares = [s | {"expires_at": 1} if s["share_id"] == short["share_id"] else s for s in json.loads(raw)]
        db.execute("UPDATE jobs SET shares = ? WHERE job_id = ?", (json.dumps(shares), job["job_id"]))
    again = start_service(data_dir=data)  # a restart: the same secret file, the same links
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(lasting["url"].replace(first.url, again.url)).status_code == 200
        gone = anyone.get(short["url"].replace(first.url, again.url) + "/download")
        assert gone.status_code == 410 and "expired on 1970-01-01" in gone.text


def test_a_link_made_with_the_job_is_in_its_webhook(simulator: Sim, start_service: Callable[..., Service]) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg"))
    with serving() as hooks:
        service = start_service(**FAST_RETRIES)
        with service.client() as client:
            job = client.post(
                f"/orders/{order_id}/jobs",
                params={"share_expires_in": 3600},
                json={"callback_url": f"{hooks.url}/done"},
            ).json()
            poll(client, job["job_id"], lambda s: s["status"] == "completed")
        payload = hooks.wait_for(1)[0].verified()
        [url] = payload["share_urls"]
        assert url.startswith(f"{service.url}/share/{job['job_id']}.")
        assert sorted(check_zip(httpx.get(f"{url}/download").content)) == ["_manifest.json", "a.jpg"]


def test_with_s3_results_a_shared_download_redirects_to_a_presigned_url(
    simulator: Sim, start_service: Callable[..., Service], tmp_path: Path
) -> None:
    order_id = seed(simulator, SeedImage(name="a.jpg", size=50_000))
    with moto_s3(tmp_path) as s3:
        service = start_service(**s3.settings())
        with service.client() as client:
            job = _finished_job(client, order_id)
            link = client.post(f"/jobs/{job['job_id']}/share").json()["url"]
        with httpx.Client(timeout=30) as anyone:
            assert anyone.get(link).status_code == 200
            redirect = anyone.get(f"{link}/download")
            assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3.endpoint)
            assert sorted(check_zip(anyone.get(redirect.headers["location"]).content)) == ["_manifest.json", "a.jpg"]


@pytest.mark.xdist_group("browser")
def test_the_share_page_in_a_browser(browser: Browser, simulator: Sim, start_service: Callable[..., Service], tmp_path: Path) -> None:
    from tests.support.browser_helpers import visit

    order_id = seed(simulator, SeedImage(name="front.jpg"), SeedImage(name="back.jpg"), name="12 Oak Street")
    service = start_service()
    with service.client() as client:
        job = _finished_job(client, order_id)
        link = client.post(f"/jobs/{job['job_id']}/share").json()["url"]
    with visit(browser, link) as v:
        expect(v.page.locator("h1")).to_have_text("12 Oak Street")
        expect(v.page.locator("ul.thumbs img")).to_have_count(2)
        v.page.screenshot(path="/tmp/share-page.png", full_page=True)
        download, members = v.download("#download", tmp_path)
        assert sorted(members) == ["_manifest.json", "back.jpg", "front.jpg"]
        assert download.url == f"{link}/download"
        assert v.errors == []


def test_the_cli_shares_revokes_and_cancels(simulator: Sim, start_service: Callable[..., Service]) -> None:
    from tests.support.cli_runner import run

    order_id = seed(simulator, SeedImage(name="a.jpg"))
    service = start_service()
    with service.client() as client:
        job = _finished_job(client, order_id)
    code, out, err = run("share", str(job["job_id"]), "--url", service.url, "--expires-in", "3600")
    assert code == 0, err
    link = out.strip()
    assert httpx.get(f"{link}/download").status_code == 200
    code, _, err = run("share", str(job["job_id"]), "--url", service.url, "--revoke", "all")
    assert code == 0 and "Withdrawn" in err
    assert httpx.get(link).status_code == 410
    code, _, err = run("cancel", str(job["job_id"]), "--url", service.url)
    assert code == 0 and "is cancelled" in err
    code, _, err = run("share", str(job["job_id"]), "--url", service.url)
    assert code == 1 and "cancelled" in err


@pytest.mark.xdist_group("browser")
def test_the_page_cancels_a_running_job_and_makes_a_link_for_a_finished_one(
    browser: Browser, simulator: Sim, start_service: Callable[..., Service]
) -> None:
    from simulator import Fault
    from tests.support.browser_helpers import visit
    from tests.support.jobs_helpers import image_id

    slow = seed(simulator, SeedImage(name="a.jpg"), SeedImage(name="slow.jpg"), name="Slow Road")
    simulator.state.add_fault(Fault(kind="latency", image_id=image_id(simulator, slow, "slow.jpg"), seconds=30))
    quick = seed(simulator, SeedImage(name="a.jpg"), name="Quick Road")
    service = start_service()
    with visit(browser, service.url) as v:
        page = v.page
        page.fill("#order-id", slow)
        expect(page.locator("#order-view")).to_be_visible()
        page.click("#job-btn")
        expect(page.locator("#job-done")).to_have_text("1")
        page.click("#job-cancel-btn")
        expect(page.locator("#job-state")).to_have_text("cancelled")
        expect(page.locator("#job-msg")).to_contain_text("Cancelled")

        page.fill("#order-id", quick)
        expect(page.locator("#order-view")).to_be_visible()
        page.click("#job-btn")
        page.click("#job-share-btn")
        link = page.locator("#share-url")
        expect(link).to_have_value(re.compile(rf"^{re.escape(service.url)}/share/"))
        v.screenshot("page-share-link.png")
        assert httpx.get(link.input_value()).status_code == 200
        # live mode without ADMIN_TOKEN: the page's recent-orders listing is refused (403), by design
        assert [e for e in v.errors if "403" not in e] == []
