"""Who may call what, and the headers every response carries.

The header middleware is pure ASGI (not BaseHTTPMiddleware) so it adds nothing per streamed chunk:
it only touches `http.response.start`.
"""

from __future__ import annotations

import hmac
import re
import uuid
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core.delivery.sets import credit_cost
from app.core.models import BatchOptions
from app.errors import Forbidden, ServiceError, Unauthorized

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

DEFAULT_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
DEFAULT_CSP = b"default-src 'none'; frame-ancestors 'none'"


class SecurityHeadersMiddleware:
    """Adds security headers and an X-Request-ID to every HTTP response; binds the id for logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in DEFAULT_HEADERS if h[0] not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", DEFAULT_CSP))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def content_security_policy(*inline_script_hashes: str) -> str:
    """Same-origin everything, no inline script unless its base64 sha256 is listed; blob: images for previews."""
    script_src = " ".join(["'self'", *(f"'sha256-{digest}'" for digest in inline_script_hashes)])
    return (
        f"default-src 'self'; script-src {script_src}; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


# The checks below return the refusal instead of raising it, so that the intake middleware
# (app/api/intake.py) can apply them before a body is read, and the route dependencies after.


def service_key_refusal(settings: Settings, x_api_key: str | None) -> ServiceError | None:
    """When SERVICE_API_KEY is set, X-API-Key must match (constant time)."""
    expected = settings.service_api_key
    if expected is not None and not _matches(x_api_key, expected.get_secret_value()):
        return Unauthorized("Missing or invalid X-API-Key", headers={"WWW-Authenticate": "X-API-Key"})
    return None


def admin_refusal(settings: Settings, x_admin_token: str | None) -> ServiceError | None:
    """ADMIN_TOKEN must match; with no token set, credit-spending routes work in demo mode only."""
    if settings.admin_token is None:
        if settings.demo_mode:
            return None
        return Forbidden("Creating orders spends credits: the operator must set ADMIN_TOKEN to enable it")
    if not _matches(x_admin_token, settings.admin_token.get_secret_value()):
        return Unauthorized("Missing or invalid X-Admin-Token")
    return None


def credit_refusal(settings: Settings, options: BatchOptions, x_api_key: str | None) -> ServiceError | None:
    """Options that spend the operator's Autoenhance credits need a caller the operator trusts.

    Trusted: a caller presenting the SERVICE_API_KEY, or anyone when ALLOW_ANONYMOUS_CREDITS is
    true. Demo mode is open too: its upstream is the embedded simulator, which charges no one.
    Previews, the web and original sets and dev mode spend nothing and stay open to all.
    """
    paid = credit_cost(1, options).full_size_sets
    if not paid or settings.demo_mode or settings.allow_anonymous_credits:
        return None
    expected = settings.service_api_key
    if expected is not None and _matches(x_api_key, expected.get_secret_value()):
        return None
    asked = " and ".join(f"the {name} set" + (" with preview=false" if name == "full" else "") for name in paid)
    how = (
        "send the service key in X-API-Key"
        if expected is not None
        else "the operator must set SERVICE_API_KEY (and callers send it in X-API-Key) or ALLOW_ANONYMOUS_CREDITS=true"
    )
    return Forbidden(
        f"Full-resolution downloads ({asked}) spend the operator's Autoenhance credits and are allowed "
        f"only for trusted callers: {how}. Free without that: preview=true with the full, web or original "
        "sets, or dev_mode=true (watermarked)."
    )


def autoenhance_refusal(settings: Settings, authorization: str | None) -> ServiceError | None:
    """Autoenhance sends its configured value in Authorization (raw, or as a Bearer token)."""
    expected = settings.autoenhance_webhook_token
    if expected is None:
        return Forbidden("This receiver is disabled: the operator has not set AUTOENHANCE_WEBHOOK_TOKEN")
    if not authorization:
        return Unauthorized("Missing Authorization", headers={"WWW-Authenticate": "Bearer"})
    if not _matches(authorization.removeprefix("Bearer ").strip(), expected.get_secret_value()):
        return Forbidden("Wrong Authorization value")
    return None


def _raise(refusal: ServiceError | None) -> None:
    if refusal is not None:
        raise refusal


async def require_service_key(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="Required when the operator set SERVICE_API_KEY")] = None,
) -> None:
    """Batch and job routes: when SERVICE_API_KEY is set, X-API-Key must match (constant time)."""
    _raise(service_key_refusal(_settings(request), x_api_key))


async def require_admin(
    request: Request,
    x_admin_token: Annotated[str | None, Header(description="The operator's ADMIN_TOKEN")] = None,
) -> None:
    """Credit-spending routes: ADMIN_TOKEN must match; with no token set they work in demo mode only."""
    _raise(admin_refusal(_settings(request), x_admin_token))


async def require_autoenhance(
    request: Request,
    authorization: Annotated[str | None, Header(description="The authentication value set at Autoenhance")] = None,
) -> None:
    """Autoenhance's webhook: the value set at Autoenhance, in Authorization."""
    _raise(autoenhance_refusal(_settings(request), authorization))


async def require_metrics_token(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer <METRICS_TOKEN>` when the operator set one")
    ] = None,
) -> None:
    """/metrics: open unless METRICS_TOKEN is set, then a Bearer token (what Prometheus scrapers send)."""
    expected = _settings(request).metrics_token
    if expected is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not _matches(presented.strip(), expected.get_secret_value()):
        raise Unauthorized("Missing or invalid bearer token (METRICS_TOKEN)", headers={"WWW-Authenticate": "Bearer"})


ServiceKey = Depends(require_service_key)
MetricsToken = Depends(require_metrics_token)
AdminToken = Depends(require_admin)
AutoenhanceToken = Depends(require_autoenhance)
