"""The web page: `GET /` and its static assets under `/static`.

The page is one HTML file plus a vanilla JS module and a stylesheet, all same-origin, so the
Content-Security-Policy can forbid everything else: no inline script, no third-party hosts.
The other security headers (nosniff, frame options, referrer policy) come from
`app.api.security.SecurityHeadersMiddleware`, which keeps a CSP a route already set.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.api.security import content_security_policy

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"


PAGE_CSP = content_security_policy()
"""The page has no inline script at all."""

REVALIDATE = "no-cache"
"""Assets are not fingerprinted: browsers keep them but revalidate (ETag -> 304), so a deploy shows at once."""

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _page() -> tuple[bytes, str]:
    body = (WEB_DIR / "index.html").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.api_route("/", methods=["GET", "HEAD"], response_class=Response)
async def index(request: Request) -> Response:
    """The single-page tool."""
    body, etag = _page()
    headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": REVALIDATE, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


class _StaticAssets(StaticFiles):
    """StaticFiles whose answers say how to cache them."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", REVALIDATE)
        return response


def mount_static(app: FastAPI) -> None:
    """Serve `app/api/web/static` at `/static`."""
    app.mount("/static", _StaticAssets(directory=STATIC_DIR), name="static")
