"""Webhook doors: the callback a job creator may ask for, watching an order, and Autoenhance's webhook.

- a job's `callback_url` (JSON body) or `callbackUrl` header is read and validated by
  `CallbackDep` (app/api/deps.py), before any upstream call;
- `POST /orders/{order_id}/watch`: start the order's job by itself once Autoenhance has finished it.
- `POST /webhooks/autoenhance`: where Autoenhance's own webhook is pointed (reference section 4).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import (
    BODY_ERRORS,
    CALLBACK_ERRORS,
    COMMON_ERRORS,
    CallbackDep,
    OrderIdPath,
    ServicesDep,
    SpendingOptionsDep,
    load_order,
    public_base_url,
)
from app.api.responses import callbacks_for, error
from app.api.security import AutoenhanceToken, ServiceKey
from app.core.models import validate_order_id
from app.errors import InvalidOrderId, NotConfigured, Unprocessable, WatchNotFound

log = logging.getLogger("app.webhooks")
router = APIRouter(tags=["webhooks"])


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
    order_id: OrderIdPath, options: SpendingOptionsDep, callback: CallbackDep, request: Request, services: ServicesDep
) -> JSONResponse:
    if services.settings.autoenhance_webhook_token is None:
        raise NotConfigured("Watching needs Autoenhance's webhook: the operator must set AUTOENHANCE_WEBHOOK_TOKEN")
    order = await load_order(order_id, services, options.sort)
    watch = await services.watcher.watch(order, options, callback, public_base_url(request))
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
    watch = await services.watcher.watches.get(watch_id)
    if watch is None:
        raise WatchNotFound()
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


@router.post(
    "/webhooks/autoenhance",
    summary="Receiver for Autoenhance's own webhook",
    description="Point Autoenhance's webhook (API page of its web app) here, with AUTOENHANCE_WEBHOOK_TOKEN as its "
    "authentication value. When an event says an order finished processing, the jobs of the watches on "
    "that order start. Other events are acknowledged and ignored.",
    response_model=EventReceived,
    dependencies=[AutoenhanceToken],
    responses={
        401: error("No Authorization header"),
        403: error("Wrong Authorization value, or the receiver is disabled (AUTOENHANCE_WEBHOOK_TOKEN unset)"),
        **BODY_ERRORS,
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
            raise Unprocessable("order_id is not a UUID") from None
        watches = await services.watcher.order_processed(order_id)
        started = [w.job_id for w in watches if w.job_id]
    return {"received": True, "jobs_started": started}
