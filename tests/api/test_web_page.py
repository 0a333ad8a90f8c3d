"""The web page and the API docs over real HTTP: served, locked down by CSP, self-contained."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from app import create_app
from harness.servers import serve
from tests.support.browser_helpers import demo_settings

EXTERNAL_URL = re.compile(r"https?://", re.IGNORECASE)


class _Refs(HTMLParser):
    """Collects every src/href, inline script bodies, and inline style or handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_attrs: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.refs += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline_attrs += [f"<{tag} {name}>" for name, _ in attrs if name == "style" or name.startswith("on")]
        self._in_inline_script = tag == "script" and "src" not in values
        if self._in_inline_script:
            self.inline_scripts.append("")

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False


def parse(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(create_app(demo_settings(tmp_path_factory.mktemp("web")))) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


def test_page_is_served_with_a_strict_csp(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:", "blob:"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"


def test_page_revalidates_with_its_etag(client: httpx.Client) -> None:
    etag = client.get("/").headers["etag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert "content-security-policy" in again.headers


def test_page_answers_head_for_uptime_checks(client: httpx.Client) -> None:
    assert client.head("/").status_code == 200


def test_page_needs_no_inline_script_or_style(client: httpx.Client) -> None:
    page = parse(client.get("/").text)
    assert page.inline_scripts == []
    assert page.inline_attrs == []


def test_every_reference_is_same_origin_and_loads(client: httpx.Client, base_url: str) -> None:
    page = parse(client.get("/").text)
    assert "static/app.js" in page.refs  # relative: the page also works under a path prefix
    assert "static/style.css" in page.refs
    origin = urlsplit(base_url).netloc
    for ref in page.refs:
        if ref.startswith("#"):
            continue
        url = urljoin(base_url + "/", ref)
        assert urlsplit(url).netloc == origin, f"{ref} leaves the service"
        assert client.get(url).status_code == 200, ref


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_typed_cached_and_self_contained(client: httpx.Client, path: str, content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert client.get(path, headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    if path != "/static/favicon.svg":  # the SVG names its XML namespace, nothing it fetches
        assert EXTERNAL_URL.findall(response.text) == [], f"{path} refers to another host"


def test_static_assets_do_not_escape_their_directory(client: httpx.Client) -> None:
    assert client.get("/static/../routes/ui.py").status_code == 404
    assert client.get("/static/%2e%2e/routes/ui.py").status_code == 404


def test_docs_work_offline(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    page = parse(response.text)
    assert page.refs, "Swagger UI page references no assets"
    for ref in page.refs:
        assert ref.startswith("/docs-assets/"), f"{ref} is not a local Swagger asset"
        assert client.get(ref).status_code == 200, ref
    assert "'/openapi.json'" in response.text
    assert client.get("/openapi.json").status_code == 200
    assert "validator.swagger.io" not in response.text


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
def test_docs_csp_allows_exactly_their_inline_scripts(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    scripts = parse(response.text).inline_scripts
    assert scripts
    csp = csp_directives(response.headers["content-security-policy"])
    expected = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in scripts}
    assert set(csp["script-src"]) == {"'self'"} | expected
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]


def test_docs_assets_serve_only_what_swagger_needs(client: httpx.Client) -> None:
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 404  # in the package, not used


def test_docs_follow_the_root_path_behind_a_proxy(tmp_path: Path) -> None:
    with serve(create_app(demo_settings(tmp_path)), root_path="/batch") as url:
        response = httpx.get(f"{url}/docs")
    assert response.status_code == 200
    refs = parse(response.text).refs
    assert refs
    assert all(ref.startswith("/batch/docs-assets/") for ref in refs), refs
    assert "'/batch/openapi.json'" in response.text
