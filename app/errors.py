"""The service's error tree: each error knows the HTTP status and the message a caller sees.

Catch a branch to handle a family; the app's one handler turns any of them into `{"detail": ...}`
(plus `failures` where listed) with the status and headers. Routes raise these, never a bare
HTTPException. Messages are written for our callers; upstream bodies never go into them (logged
instead). Errors marked * are defined beside the code that raises them.

* ServiceError                    500  base
  + BadRequest                    400
    - InvalidOrderId                   not a UUID (before any upstream call)
  + Unauthorized                  401  credentials missing or wrong (WWW-Authenticate)
  + Forbidden                     403  not enabled by the operator, or a wrong webhook token
  + NotFound                      404
    - OrderNotFound                    Autoenhance does not know the order
    - JobNotFound*                     app/jobs/records.py
    - WatchNotFound
  + Conflict                      409
    - JobNotReady*                     app/jobs/records.py
  + Gone                          410
    - JobExpired*                      app/jobs/records.py
  + PayloadTooLarge               413
  + UnsatisfiableRange            416  a Range past the end of a file (Content-Range: bytes */size)
  + Unprocessable                 422
    - OrderTooLarge, EmptyOrder, InvalidPageOffset, InvalidUpload, InvalidOption
    - NothingSucceeded                 + `failures`
    - JobFailed*                       + `failures` (app/jobs/records.py)
    - InvalidCallbackUrl*              app/webhooks/urls.py
  + CallerGone*                   499  app/core/wait.py
  + UpstreamError                 502  Autoenhance failed us
    - UpstreamAuthError, UpstreamUnavailable, UpstreamBadResponse
  + Unavailable                   503  try again later (Retry-After where known)
    - CircuitOpen*                     app/core/upstream/breaker.py
    - TooManyJobs*                     app/jobs/records.py
    - StorageBudgetExceeded*           app/core/budget/disk.py (DATA_DIR over its budget)
    - NotConfigured                    a feature the operator has not set up
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


# -- the branches, by HTTP status -------------------------------------------------------------------


class BadRequest(ServiceError):
    status_code = 400
    message = "Bad request"


class Unauthorized(ServiceError):
    status_code = 401
    message = "Missing or invalid credentials"


class Forbidden(ServiceError):
    status_code = 403
    message = "Forbidden"


class NotFound(ServiceError):
    status_code = 404
    message = "Not found"


class Conflict(ServiceError):
    status_code = 409


class Gone(ServiceError):
    status_code = 410


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsatisfiableRange(ServiceError):
    status_code = 416


class Unprocessable(ServiceError):
    status_code = 422
    message = "Unprocessable request"


class Unavailable(ServiceError):
    status_code = 503
    message = "Temporarily unavailable; try again later"


# -- the leaves ----------------------------------------------------------------------------------------


class InvalidOrderId(BadRequest):
    pass


class InvalidOption(Unprocessable):
    """A choice no batch can honour (an unknown delivery set, say), refused before any upstream call."""


class OrderNotFound(NotFound):
    message = "Order not found on Autoenhance"


class WatchNotFound(NotFound):
    message = "No such watch (unknown id, or forgotten 7 days after it was made)"


class OrderTooLarge(Unprocessable):
    pass


class InvalidUpload(Unprocessable):
    """A photo upload that is not one (no file, too many, not an image)."""


class NotConfigured(Unavailable):
    """A feature that needs a setting the operator has not made."""


class InvalidPageOffset(Unprocessable):
    """The order listing's `offset` is not a page token Autoenhance recognises."""

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
    set: str | None = None
    """The delivery set of the missing file (None for an entry that was never planned, e.g. no id)."""

    def as_dict(self) -> dict[str, str | None]:
        data: dict[str, str | None] = {
            "image_id": self.image_id,
            "name": self.name,
            "reason": self.reason,
            "recovery": self.recovery,
        }
        if self.set is not None:
            data["set"] = self.set
        return data


class NothingSucceeded(Unprocessable):
    """Every image of the order failed: there is no archive worth sending."""

    def __init__(self, failures: list[ImageFailure], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"None of the order's {len(failures)} images could be downloaded", headers=headers)
        self.failures = failures

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "failures": [f.as_dict() for f in self.failures]}


class EmptyOrder(Unprocessable):
    message = "The order has no images"
