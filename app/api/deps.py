"""The request dependencies every route shares, typed once: routes import them from here, never from
each other (as in full-stack-fastapi-template's `api/deps.py`).
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from app.api.responses import FAILURES_SCHEMA, error
from app.api.security import credit_refusal
from app.config import DEMO_ORDER_ID
from app.core.delivery.selection import parse_images
from app.core.delivery.sets import MAX_DPI, MIN_DPI, SET_HELP, definitions, parse_sets
from app.core.delivery.templates import MAX_TEMPLATE, checked_template
from app.core.models import (
    BatchOptions,
    ImageFormat,
    ImageSort,
    NameStyle,
    OrderInfo,
    SetDefinition,
    validate_order_id,
)
from app.core.wait import MAX_WAIT_SECONDS, WaitOptions
from app.webhooks.urls import InvalidCallbackUrl
from app.wiring import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

OrderIdPath = Annotated[
    str,
    Path(
        description="Autoenhance order id (a UUID; anything else is a 400 before any upstream call)",
        # Parameter-level (Swagger UI's "Try it out" fills these in; it ignores schema-level examples):
        # the demo order, which a service without AUTOENHANCE_API_KEY (demo mode) always has.
        openapi_examples={"demo": {"summary": "The demo order (demo mode)", "value": DEMO_ORDER_ID}},
        json_schema_extra={"format": "uuid"},
    ),
]


SETS_HELP = "Comma list of delivery sets, each in its own folder: " + "; ".join(
    f"{name} ({text})" for name, text in SET_HELP.items()
)


def delivery_sets(request: Request) -> dict[str, SetDefinition]:
    """The operator's sets (DELIVERY_SETS), read when the app was made."""
    sets: dict[str, SetDefinition] = getattr(request.app.state, "delivery_sets", {})
    return sets


def batch_options(
    request: Request,
    format: Annotated[ImageFormat, Query(description="Output format of every image")] = ImageFormat.jpeg,
    quality: Annotated[
        int | None, Query(ge=1, le=90, description="Image quality 1-90; omit for Autoenhance's default")
    ] = None,
    preview: Annotated[
        bool, Query(description="true: free preview size; false: full resolution (spends credits unless dev_mode)")
    ] = True,
    dev_mode: Annotated[
        bool, Query(description="Send x-dev-mode: true upstream: no credits spent, watermarked result")
    ] = False,
    sets: Annotated[str | None, Query(max_length=100, description=SETS_HELP)] = None,
    names: Annotated[
        NameStyle, Query(description="original: the uploads' names; sequence: '01 - front.jpg', in the order's order")
    ] = NameStyle.original,
    max_width: Annotated[
        int | None, Query(ge=1, le=20000, description="The full set: at most this many pixels wide")
    ] = None,
    scale: Annotated[float | None, Query(gt=0, le=1, description="The full set: scale factor 0-1")] = None,
    sort: Annotated[
        ImageSort | None,
        Query(description="Photo order for numbered names, the manifest and the report; default: the order's own "
              "(`default_image_sort_order`, as the photographer arranged it on Autoenhance)"),
    ] = None,
    images: Annotated[
        str | None,
        Query(
            max_length=100_000,
            description="Only these photos: a comma list of image ids or exact image names (default: every "
            "photo). A name that matches no photo is a 422 before any download; numbers (names=sequence) stay "
            "the photos' places in the whole order",
        ),
    ] = None,
    dpi: Annotated[
        int | None,
        Query(ge=MIN_DPI, le=MAX_DPI, description="The full set: density in dots per inch written into each file "
              "(Autoenhance's dpi, 72 or more); the print set is always 300"),
    ] = None,
    template: Annotated[
        str | None,
        Query(
            max_length=MAX_TEMPLATE,
            description="Name every file from a template: {n} (place in the order, zero-padded), {name} "
            "(original name), {ext}, {order} (order name), {set}, {letter} (a, b, c...); modifiers {n:1}, "
            "{order:slug}, {letter:upper}; {{ and }} are braces. '{n:1}-print-{order:slug}' gives "
            "'1-print-123-main-st.jpg'. Overrides names=",
        ),
    ] = None,
) -> BatchOptions:
    return BatchOptions(
        format=format,
        quality=quality,
        preview=preview,
        dev_mode=dev_mode,
        sets=(chosen := parse_sets(sets, delivery_sets(request))),
        custom=definitions(chosen, delivery_sets(request)),
        names=names,
        max_width=max_width,
        scale=scale,
        sort=sort.value if sort is not None else None,
        images=parse_images(images),
        template=checked_template(template),
        dpi=dpi,
    )


OptionsDep = Annotated[BatchOptions, Depends(batch_options)]


def spending_options(request: Request, options: OptionsDep) -> BatchOptions:
    """The options of a door that downloads (ZIP, job, watch): 403 before any upstream call when
    they would spend credits for a caller the operator does not trust (app/api/security.py)."""
    refusal = credit_refusal(request.app.state.settings, options, request.headers.get("x-api-key"))
    if refusal is not None:
        raise refusal
    return options


SpendingOptionsDep = Annotated[BatchOptions, Depends(spending_options)]
"""OptionsDep for the doors that download; the photos listing (free) keeps OptionsDep."""


def wait_options(
    wait: Annotated[
        bool, Query(description="Poll the order until no image is still processing, then download (bounded by wait_timeout)")
    ] = False,
    wait_timeout: Annotated[
        float,
        Query(
            gt=0,
            le=MAX_WAIT_SECONDS,
            description="With wait=true: seconds to wait at most; then the ready images are served and the rest "
            "reported as still processing",
        ),
    ] = 60.0,
) -> WaitOptions:
    return WaitOptions(wait=wait, timeout=wait_timeout)


WaitDep = Annotated[WaitOptions, Depends(wait_options)]


async def load_order(order_id: str, services: Services, sort: str | None = None) -> OrderInfo:
    """Validate the id (400 before any upstream call), fetch the order and bind it to the logs.

    A plain function, not a dependency: FastAPI would run a dependency even when the query
    options already failed validation, and bad input must cost no upstream call.
    """
    order_id = validate_order_id(order_id)
    structlog.contextvars.bind_contextvars(order_id=order_id)
    order = await services.client.get_order(order_id, sort)
    services.stats.order_fetched()
    return order


COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("The order id is not a UUID (checked before any upstream call)"),
    401: error("SERVICE_API_KEY is set and X-API-Key is missing or wrong"),
    403: error(
        "The options spend Autoenhance credits (preview=false, the mls set) and the caller is not trusted: "
        "no valid X-API-Key and ALLOW_ANONYMOUS_CREDITS is not true"
    ),
    404: error("Autoenhance does not know this order"),
    422: error(
        "Bad format/quality, an empty or oversized order, or not one image could be downloaded "
        "(then `failures` lists each image and why)",
        FAILURES_SCHEMA,
    ),
    502: error("Autoenhance rejected this service's key, failed, or answered something unreadable"),
    429: error("This caller is over RATE_LIMIT (per X-API-Key, else per address); Retry-After says when to retry"),
    503: error(
        "Autoenhance failed repeatedly, so the circuit breaker is open and the service fails fast; "
        "Retry-After says when it probes again"
    ),
}


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


async def callback_url(
    services: ServicesDep,
    body: Annotated[
        CallbackRequest | None,
        Body(
            description="Optional; only `callback_url`",
            openapi_examples={  # the first is what "Try it out" sends: one a default service accepts
                "none": {"summary": "No callback: poll GET /v1/jobs/{job_id}", "value": {}},
                "callback": {
                    "summary": "A signed callback (the service needs WEBHOOK_SECRET)",
                    "value": {"callback_url": "https://example.com/hooks/autoenhance"},
                },
            },
        ),
    ] = None,
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
    return await services.webhooks.check_callback_url(url)


CallbackDep = Annotated[str | None, Depends(callback_url)]

BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    408: error("The request body arrived too slowly (BODY_TIMEOUT_SECONDS)"),
    413: error("The request body is over this route's limit (checked before it is read)"),
}

CALLBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    422: error(
        "Bad options or order (as for the ZIP route), or a callback URL that is malformed, unresolvable, "
        "points at a private/loopback/link-local/metadata address, or is given while WEBHOOK_SECRET is unset"
    )
}


def public_base_url(request: Request) -> str:
    """The base URL the caller reached us at (root_path included): the links in its callback start here."""
    return str(request.base_url).rstrip("/")
