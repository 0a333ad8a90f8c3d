"""Swagger UI at `/docs`, served entirely from a local package (works offline, no CDN).

The assets come from `fastapi-offline` (Swagger UI 5). `swagger-ui-bundle` 1.1.0, the newest on
PyPI, ships Swagger UI 4.15, which refuses FastAPI's OpenAPI 3.1 schema ("Unable to render this
definition"). Only the asset files are used, not fastapi-offline's app factory.

FastAPI's Swagger page boots with one inline `<script>`; rather than allow 'unsafe-inline', each
response carries the page's CSP plus the sha256 of exactly the inline scripts it contains. Styles
need no exception: the browser test runs "Try it out" under this policy without a violation.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.api.security import content_security_policy

ASSETS_PREFIX = "/docs-assets"
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

SWAGGER_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
_ASSET_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"})
"""The files the docs page loads (the package also holds ReDoc, which is not served)."""

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


def _with_csp(page: HTMLResponse) -> tuple[str, str]:
    """The page's HTML, and a CSP admitting exactly its inline scripts."""
    html = bytes(page.body).decode()
    digests = (base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in _INLINE_SCRIPT.findall(html))
    return html, content_security_policy(*digests)


def _respond(page: tuple[str, str]) -> HTMLResponse:
    """A fresh response per request from a cached (html, csp) pair."""
    html, csp = page
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})


@lru_cache(maxsize=8)
def _docs_page(root: str, openapi_url: str, title: str) -> tuple[str, str]:
    assets = root + ASSETS_PREFIX
    return _with_csp(
        get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            # validatorUrl: None keeps Swagger from calling validator.swagger.io for its badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@lru_cache(maxsize=1)
def _oauth2_redirect_page() -> tuple[str, str]:
    return _with_csp(get_swagger_ui_oauth2_redirect_html())


@router.get(DOCS_PATH, response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API docs (Swagger UI) for this service's OpenAPI schema."""
    app = request.app
    return _respond(_docs_page(request.scope.get("root_path", ""), app.openapi_url or "/openapi.json", app.title))


@router.get(OAUTH2_REDIRECT_PATH, response_class=HTMLResponse)
async def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect target."""
    return _respond(_oauth2_redirect_page())


class _SwaggerAssets(StaticFiles):
    """The package's static directory, limited to the files the docs page loads."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in _ASSET_FILES:
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        # The files change only when the pinned package does; revalidation is cheap either way.
        response.headers.setdefault("Cache-Control", "public, max-age=86400")
        return response


def mount_docs_assets(app: FastAPI) -> None:
    """Serve the Swagger UI bundle at `/docs-assets`."""
    app.mount(ASSETS_PREFIX, _SwaggerAssets(directory=SWAGGER_ASSETS_DIR), name="docs-assets")
