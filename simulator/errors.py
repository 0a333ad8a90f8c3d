"""Errors in the shapes the real API (APIFlask) answers with, plus S3-style XML for assets.

HTTPError: `{"detail": {...}, "message": "..."}`; ValidationError (422):
`{"detail": {"<location>": {"<field>": ["msg", ...]}}, "message": "Validation error"}`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from simulator.jsonbody import JSONResponse


class ApiError(Exception):
    """An error answered as an APIFlask HTTPError body."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        detail: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.detail = detail or {}
        self.headers = headers or {}
        super().__init__(f"{status} {self.message}")

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": self.detail, "message": self.message}, self.status, headers=self.headers)


class NotFound(ApiError):
    def __init__(self, message: str = "Not Found", detail: dict[str, Any] | None = None) -> None:
        super().__init__(404, message, detail)


class Unauthorized(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "Unauthorized")


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


class ValidationFailed(ApiError):
    """422 with per-field messages, e.g. ValidationFailed("query", {"quality": ["Must be ..."]})."""

    def __init__(self, location: str, fields: dict[str, list[str]]) -> None:
        super().__init__(422, "Validation error", {location: fields})


def s3_error(status: int, code: str, message: str, resource: str = "") -> Response:
    """An S3-looking XML error document, as presigned URLs answer."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>SIMULATOR</RequestId></Error>"
    )
    return Response(body, status, media_type="application/xml")
