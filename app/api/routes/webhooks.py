"""Webhook doors: the callback a job creator may ask for, watching an order, and Autoenhance's webhook.

- `CallbackDep` reads a job's `callback_url` (JSON body) or `callbackUrl` header (seed 002's
  agent platforms) and validates it before any upstream call; `CALLBACKS` declares the POST we
  make to it in the OpenAPI document.
- `POST /orders/{order_id}/watch`: start the order's job by itself once Autoenhance has finished it.
- `POST /webhooks/autoenhance`: where Autoenhance's own webhook is pointed (reference section 4).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.routing import BaseRoute
from pydantic import BaseModel, ConfigDict, Field

from app.api.responses import error
from app.api.routes.batch import COMMON_ERRORS, OptionsDep, OrderIdPath, load_order
from app.api.security import ServiceKey
from app.core.models import validate_order_id
from app.errors import InvalidOrderId
from app.webhooks import Webhooks
from app.webhooks.payload import JobCallback
from app.webhooks.urls import InvalidCallbackUrl
from app.wiring import Services, ServicesDep

log = logging.getLogger("app.webhooks")
router = APIRouter(tags=["webhooks"])


# -- the caller's callback ------------------------------------------------------------------------


class CallbackRequest(BaseModel):
    """Optional JSON body of POST /orders/{order_id}/jobs and /watch."""

    model_config = ConfigDict(extra="forbid")

    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="http(s) URL to POST the signed result to when the job ends (or send the `callbackUrl` header)",
        examples=["https://example.com/hooks/autoenhance"],
    )


def _webhooks(services: Services) -> Webhooks:
    webhooks: Webhooks = services.webhooks
    return webhooks


async def callback_url(
    services: ServicesDep,
    body: Annotated[CallbackRequest | None, Body(description="Optional; only `callback_url`")] = None,
    header: Annotated[
        str | None,
        Header(
            alias="callbackUrl",
            description="The callback URL as a header, for agent platforms that pass it so (same as `callback_url`)",
        ),
    ] = None,
) -> str | None:
    """The validated callback URL of this request, or None (422 when bad, unsafe, or given twice differently)."""
    in_body = body.callback_url if body is not None else None
    if in_body and header and in_body.strip() != header.strip():
        raise InvalidCallbackUrl("callback_url (body) and the callbackUrl header differ; send one")
    url = in_body or header
    if url is None:
        return None
    return await _webhooks(services).check_callback_url(url)


CallbackDep = Annotated[str | None, Depends(callback_url)]

CALLBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    422: error(
        "Bad options or order (as for the ZIP route), or a callback URL that is malformed, unresolvable, "
        "points at a private/loopback/link-local/metadata address, or is given while WEBHOOK_SECRET is unset"
    )
}

_CALLBACK_DESCRIPTION = (
    "Signed per Standard Webhooks: `webhook-id` (the same on every retry), `webhook-timestamp`, "
    "`webhook-signature` = `v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>` with WEBHOOK_SECRET. "
    "Answer 2xx to acknowledge; anything else (or no answer within WEBHOOK_TIMEOUT_SECONDS) is retried "
    "with exponential backoff for WEBHOOK_RETRY_WINDOW_SECONDS; 410 stops the retries."
)


def callbacks_for(operation: str) -> list[BaseRoute]:
    """The OpenAPI `callbacks` of one operation: the POST we make to the URL from the body or the header.

    Built per operation because operationIds must be unique across the whole document.
    """
    router = APIRouter()

    @router.post(
        "{$request.body#/callback_url}",
        name="jobFinished",
        operation_id=f"{operation}_jobFinished",
        summary="The job ended (completed, completed_with_errors or failed)",
        description=_CALLBACK_DESCRIPTION,
        responses={200: {"description": "Received (any 2xx)"}},
    )
    def job_finished_body(body: JobCallback) -> None:  # pragma: no cover - documentation only
        ...

    @router.post(
        "{$request.header.callbackUrl}",
        name="jobFinishedViaHeader",
        operation_id=f"{operation}_jobFinishedViaHeader",
        summary="The same callback, when the URL came in the callbackUrl header",
        description=_CALLBACK_DESCRIPTION,
        responses={200: {"description": "Received (any 2xx)"}},
    )
    def job_finished_header(body: JobCallback) -> None:  # pragma: no cover - documentation only
        ...

    return router.routes


def public_base_url(request: Request) -> str:
    """The base URL the caller reached us at (root_path included): the links in its callback start here."""
    return str(request.base_url).rstrip("/")


# -- watching an order ----------------------------------------------------------------------------


class WatchView(BaseModel):
    watch_id: str
    order_id: str
    status: Literal["watching", "starting", "started", "failed", "expired"]
    options: dict[str, Any]
    callback_url: str | None
    job_id: str | None
    job_status_url: str | None
    error: str | None
    created_at: str
    expires_at: str | None
    status_url: str


@router.post(
    "/orders/{order_id}/watch",
    summary="Start the order's job by itself when Autoenhance finishes processing it",
    description="Checks the order exists and records a watch (202). When Autoenhance's webhook reports the "
    "order done (`image_processed` with `order_is_processing: false`), a job starts with these options and, if "
    "given, `callback_url` gets its signed result. If the order is already done, the job starts now "
    "(`status: started`, `job_id` set). Needs AUTOENHANCE_WEBHOOK_TOKEN set and Autoenhance's webhook pointed at "
    "`/webhooks/autoenhance`. Unstarted watches are forgotten after 7 days.",
    status_code=202,
    response_model=WatchView,
    dependencies=[ServiceKey],
    callbacks=callbacks_for("watch_order"),
    responses={
        202: {"description": "Watching (or started); `Location` is the watch's status URL"},
        **COMMON_ERRORS,
        **CALLBACK_ERRORS,
        503: error("Autoenhance's webhook receiver is not configured (AUTOENHANCE_WEBHOOK_TOKEN unset)"),
    },
)
async def watch_order(
    order_id: OrderIdPath, options: OptionsDep, callback: CallbackDep, request: Request, services: ServicesDep
) -> JSONResponse:
    if services.settings.autoenhance_webhook_token is None:
        raise HTTPException(
            503, "Watching needs Autoenhance's webhook: the operator must set AUTOENHANCE_WEBHOOK_TOKEN"
        )
    order = await load_order(order_id, services)
    watch = await _webhooks(services).watch(order, options, callback, public_base_url(request), services)
    return JSONResponse(watch.view(), status_code=202, headers={"Location": f"/watches/{watch.watch_id}"})


@router.get(
    "/watches/{watch_id}",
    summary="A watch's status, and its job once started",
    response_model=WatchView,
    dependencies=[ServiceKey],
    responses={401: COMMON_ERRORS[401], 404: error("No watch with this id (or it was forgotten)")},
)
async def watch_status(
    watch_id: Annotated[str, Path(description="The watch id from POST /orders/{order_id}/watch")],
    services: ServicesDep,
) -> dict[str, Any]:
    watch = await _webhooks(services).watches.get(watch_id)
    if watch is None:
        raise HTTPException(404, "No such watch (unknown id, or forgotten 7 days after it was made)")
    return watch.view()


# -- Autoenhance's webhook ------------------------------------------------------------------------


class AutoenhanceEvent(BaseModel):
    """What Autoenhance POSTs (reference section 4); unknown fields are tolerated."""

    model_config = ConfigDict(extra="allow")

    event: str = Field(description="`image_processed`, or `webhook_updated` when the URL is saved")
    image_id: str | None = None
    order_id: str | None = None
    error: bool | None = None
    order_is_processing: bool | None = Field(default=None, description="false once the whole order is done")


class EventReceived(BaseModel):
    received: bool
    jobs_started: list[str]


def autoenhance_auth(
    request: Request,
    authorization: Annotated[str | None, Header(description="The authentication value set at Autoenhance")] = None,
) -> None:
    """Autoenhance sends its configured value in Authorization (raw, or as a Bearer token)."""
    expected = request.app.state.settings.autoenhance_webhook_token
    if expected is None:
        raise HTTPException(403, "This receiver is disabled: the operator has not set AUTOENHANCE_WEBHOOK_TOKEN")
    if not authorization:
        raise HTTPException(401, "Missing Authorization", headers={"WWW-Authenticate": "Bearer"})
    presented = authorization.removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        raise HTTPException(403, "Wrong Authorization value")


@router.post(
    "/webhooks/autoenhance",
    summary="Receiver for Autoenhance's own webhook",
    description="Point Autoenhance's webhook (API page of its web app) here, with AUTOENHANCE_WEBHOOK_TOKEN as its "
    "authentication value. When an event says an order finished processing, the jobs of the watches on "
    "that order start. Other events are acknowledged and ignored.",
    response_model=EventReceived,
    dependencies=[Depends(autoenhance_auth)],
    responses={
        401: error("No Authorization header"),
        403: error("Wrong Authorization value, or the receiver is disabled (AUTOENHANCE_WEBHOOK_TOKEN unset)"),
        422: error("The body is not an Autoenhance event"),
    },
)
async def autoenhance_webhook(event: AutoenhanceEvent, services: ServicesDep) -> dict[str, Any]:
    log.info("autoenhance webhook", extra={"event": event.event, "order_id": event.order_id})
    started: list[str] = []
    if event.event == "image_processed" and event.order_is_processing is False and event.order_id:
        try:
            order_id = validate_order_id(event.order_id)
        except InvalidOrderId:
            raise HTTPException(422, "order_id is not a UUID") from None
        watches = await _webhooks(services).order_processed(order_id, services)
        started = [w.job_id for w in watches if w.job_id]
    return {"received": True, "jobs_started": started}
