"""The service's error hierarchy: each error knows the HTTP status and the message a caller sees.

Messages are written for our callers; upstream bodies never go into them (they are logged instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ServiceError(Exception):
    """Base of every error that maps to an HTTP answer."""

    status_code = 500
    message = "Internal error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"detail": self.message}


class InvalidOrderId(ServiceError):
    status_code = 400


class OrderNotFound(ServiceError):
    status_code = 404
    message = "Order not found on Autoenhance"


class OrderTooLarge(ServiceError):
    status_code = 422


class InvalidPageOffset(ServiceError):
    """The order listing's `offset` is not a page token Autoenhance recognises."""

    status_code = 422
    message = "offset is not a page of the order listing: pass the next_offset of a previous page"


class UpstreamError(ServiceError):
    """Autoenhance failed us: the caller gets 502 and a message; the upstream body goes to the log."""

    status_code = 502
    message = "Autoenhance API request failed"


class UpstreamAuthError(UpstreamError):
    message = "Autoenhance rejected this service's API key; the operator must check AUTOENHANCE_API_KEY"


class UpstreamUnavailable(UpstreamError):
    message = "Autoenhance API is unavailable; try again later"


class UpstreamBadResponse(UpstreamError):
    message = "Autoenhance API returned a response this service cannot read"


@dataclass(frozen=True)
class ImageFailure:
    """One image that did not make it into the archive, and what the caller can do about it."""

    image_id: str
    name: str
    reason: str
    recovery: str

    def as_dict(self) -> dict[str, str]:
        return {"image_id": self.image_id, "name": self.name, "reason": self.reason, "recovery": self.recovery}


class NothingSucceeded(ServiceError):
    """Every image of the order failed: there is no archive worth sending."""

    status_code = 422

    def __init__(self, failures: list[ImageFailure], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"None of the order's {len(failures)} images could be downloaded", headers=headers)
        self.failures = failures

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "failures": [f.as_dict() for f in self.failures]}


class EmptyOrder(ServiceError):
    status_code = 422
    message = "The order has no images"
