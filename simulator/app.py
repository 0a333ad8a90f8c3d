"""HTTP routes of the simulated Autoenhance v3 API (plain Starlette, so every error body is ours to shape).

Choices where the public contract is silent (see the reference doc, section 8):
- /enhanced, /original and /preview answer **302** to `/assets/<random token>` (on
  `asset_base_url` when set), which serves the bytes with Content-Length; tokens expire.
- An image that is not processed yet (waiting, processing, error) answers /enhanced with
  404 `{"detail": {"status": "<status>"}, "message": "Image not processed yet"}`: the same code
  as an unknown image (what the spec lists), with a message a client can tell apart.
- 429 bodies are `{"detail": {}, "message": "Too Many Requests"}`; the concurrency limit adds
  `Retry-After: 1`, a `rate_limit` fault adds it when `retry_after` is set.
- Assets and uploads answer errors as S3 does (XML); everything else as APIFlask does (JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator import control, downloads, uploads
from simulator.errors import ApiError
from simulator.jsonbody import JSONResponse
from simulator.records import ImageRecord
from simulator.route_helpers import api_version, asset_base, json_body, route, seconds_header, sim
from simulator.state import SimulatorState, refuse_premium_restage
from simulator.validation import (
    BRACKET_IN,
    IMAGE_IN,
    IMAGE_IN_UPDATE,
    LIST_QUERY,
    ORDER_IN,
    ORDER_PROCESS_IN,
    ORDER_QUERY,
    REPORT_IN,
    parse_fields,
    with_channels,
)
from simulator.versions import ApiVersion
from simulator.webhooks import notifier_running


def create_app(state: SimulatorState | None = None) -> Starlette:
    """The simulator as an ASGI app; its state is also at `app.state.simulator`.

    Its lifespan runs the webhook notifier (idle unless a webhook is configured); in-process use
    without a lifespan (the service's demo mode) simply sends no webhooks.
    """
    state = state or SimulatorState()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with notifier_running(state):
            yield

    app = Starlette(
        lifespan=lifespan,
        routes=_routes() + control.routes(),
        middleware=[Middleware(NormalizePath), Middleware(RequestLog, state=state)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.simulator = state
    return app


class NormalizePath:
    """Collapse `//v3/...` and drop trailing slashes, so every spelling reaches one route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            clean = "/" + "/".join(part for part in path.split("/") if part)
            if clean != path:
                scope = {**scope, "path": clean, "raw_path": clean.encode("utf-8")}
        await self.app(scope, receive, send)


class RequestLog:
    """Remember each request to the API, uploads and assets (method, path, query, the `x-api-version`
    header or None) in `state.request_log`; read at /_simulator/requests."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(("/v3/", "/uploads/", "/s3/", "/assets/")):
            query = scope.get("query_string", b"").decode("latin-1")
            version = Headers(scope=scope).get("x-api-version")
            entry = {"method": scope["method"], "path": scope["path"], "query": query, "api_version": version}
            self.state.request_log.append(entry)
        await self.app(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return ApiError(exc.status_code, headers=dict(exc.headers or {})).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    return ApiError(500).response()


# ---- orders ----------------------------------------------------------------------------------


async def create_order(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), ORDER_IN)
    order = state.create_order(fields.get("order_id"), fields.get("name"))
    return JSONResponse(state.order_json(order, api_version(request)))


async def list_orders(request: Request) -> Response:
    query = parse_fields("query", request.query_params, LIST_QUERY)
    page = sim(request).list_orders(
        query.get("per_page") or 5,
        query.get("offset"),
        q=query.get("q"),
        sort=query.get("sort"),
        version=api_version(request),
    )
    return JSONResponse(page)


async def get_order(request: Request) -> Response:
    state = sim(request)
    order_id = request.path_params["order_id"]
    version = api_version(request)
    query = parse_fields("query", request.query_params, ORDER_QUERY)
    if fault := state.faults.take("order_latency", order_id=order_id):
        await asyncio.sleep(fault.seconds)
    if fault := state.faults.take("order_status", order_id=order_id):
        headers = {"Retry-After": seconds_header(fault.retry_after)} if fault.retry_after is not None else None
        return ApiError(fault.status, headers=headers).response()
    if state.faults.take("order_not_json", order_id=order_id):
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 200, media_type="text/html")
    if fault := state.faults.take("order_payload", order_id=order_id):
        return JSONResponse(fault.payload)
    return JSONResponse(state.order_json(state.get_order(order_id), version, query.get("sort_images_by")))


async def update_order(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), ORDER_IN)
    order = state.rename_order(request.path_params["order_id"], fields.get("name"))
    return JSONResponse(state.order_json(order, api_version(request)))


async def delete_order(request: Request) -> Response:
    sim(request).delete_order(request.path_params["order_id"])
    return Response(status_code=204)


async def process_order(request: Request) -> Response:
    state = sim(request)
    version = api_version(request)
    fields = parse_fields("json", await json_body(request), with_channels(ORDER_PROCESS_IN, version.channels))
    refuse_premium_restage(fields)
    return JSONResponse(state.order_json(state.process_order(request.path_params["order_id"], fields), version))


async def merge_order(request: Request) -> Response:
    state = sim(request)
    version = api_version(request)
    fields = parse_fields("json", await json_body(request), with_channels(ORDER_PROCESS_IN, version.channels))
    refuse_premium_restage(fields)
    return JSONResponse(state.order_json(state.merge_order(request.path_params["order_id"], fields), version))


async def order_brackets(request: Request) -> Response:
    state = sim(request)
    order = state.get_order(request.path_params["order_id"])
    brackets = [state.brackets[b].to_json() for b in order.bracket_ids if b in state.brackets]
    return JSONResponse({"brackets": brackets})


async def create_bracket(request: Request) -> Response:
    state = sim(request)
    bracket = state.create_bracket(parse_fields("json", await json_body(request), BRACKET_IN))
    url = f"{asset_base(request)}/uploads/brackets/{bracket.bracket_id}?token={bracket.upload_token}"
    return JSONResponse({**bracket.to_json(), "upload_url": url})


# ---- images ----------------------------------------------------------------------------------


def _upload_urls(request: Request, image: ImageRecord, version: ApiVersion) -> dict[str, str]:
    """The upload URL under the served version's key; `upload_url` and `upload_file_url` name the same
    plain URL (any Content-Type), `s3PutObjectUrl` the legacy one signed with the declared type."""
    base = asset_base(request)
    s3_query = {"X-Amz-Expires": "3600", "X-Amz-Signature": image.upload_token}
    if image.content_type:
        s3_query["content-type"] = image.content_type
    plain = f"{base}/uploads/{image.image_id}?token={image.upload_token}"
    urls = {
        "upload_file_url": plain,
        "upload_url": plain,
        "s3PutObjectUrl": f"{base}/s3/{image.image_id}?{urlencode(s3_query)}",
    }
    return {key: urls[key] for key in version.upload_keys}


async def create_image(request: Request) -> Response:
    state = sim(request)
    version = api_version(request)
    fields = parse_fields("json", await json_body(request), with_channels(IMAGE_IN, version.channels))
    refuse_premium_restage(fields)
    image = state.create_image(fields)
    return JSONResponse({**state.image_json(image, version), **_upload_urls(request, image, version)})


async def get_image(request: Request) -> Response:
    state = sim(request)
    return JSONResponse(state.image_json(state.get_image(request.path_params["image_id"]), api_version(request)))


async def premium_edit(request: Request) -> Response:
    """PUT /v3/images/{id} {"restage": {"environment": "DUSK"}}: a new image (the path is inferred)."""
    state = sim(request)
    version = api_version(request)
    fields = parse_fields("json", await json_body(request), with_channels(IMAGE_IN_UPDATE, version.channels))
    return JSONResponse(state.image_json(state.premium_edit(request.path_params["image_id"], fields), version))


async def delete_image(request: Request) -> Response:
    sim(request).delete_image(request.path_params["image_id"])
    return Response(status_code=204)


async def process_image(request: Request) -> Response:
    state = sim(request)
    version = api_version(request)
    fields = parse_fields("json", await json_body(request), with_channels(IMAGE_IN_UPDATE, version.channels))
    refuse_premium_restage(fields)  # inferred: reprocessing is processing too; the premium edit is the PUT
    return JSONResponse(state.image_json(state.reprocess(request.path_params["image_id"], fields), version))


async def report_image(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), REPORT_IN)
    return JSONResponse(state.report(request.path_params["image_id"], fields))


async def index(request: Request) -> Response:
    return JSONResponse({"name": "Autoenhance v3 simulator", "docs": "simulator/__init__.py"})


def _routes() -> list[BaseRoute]:
    r = route
    return [
        Route("/", index, methods=["GET"]),
        r("/v3/orders", "order_list", list_orders, ["GET"], auth=True),
        r("/v3/orders", "order_create", create_order, ["POST"], auth=True),
        r("/v3/orders/{order_id}", "order_get", get_order, ["GET"]),
        r("/v3/orders/{order_id}", "order_update", update_order, ["PATCH", "PUT"], auth=True),
        r("/v3/orders/{order_id}", "order_delete", delete_order, ["DELETE"], auth=True),
        r("/v3/orders/{order_id}/process", "order_process", process_order, ["POST"], auth=True),
        r("/v3/orders/{order_id}/merge", "order_merge", merge_order, ["POST"], auth=True),
        r("/v3/orders/{order_id}/brackets", "order_brackets", order_brackets, ["GET"]),
        r("/v3/brackets", "bracket_create", create_bracket, ["POST"], auth=True),
        r("/v3/images", "image_create", create_image, ["POST"], auth=True),
        r("/v3/images/{image_id}", "image_get", get_image, ["GET"]),
        r("/v3/images/{image_id}", "image_delete", delete_image, ["DELETE"], auth=True),
        r("/v3/images/{image_id}", "image_premium", premium_edit, ["PUT"], auth=True),
        r("/v3/images/{image_id}/process", "image_process", process_image, ["POST", "PATCH"], auth=True),
        r("/v3/images/{image_id}/report", "image_report", report_image, ["POST"], auth=True),
        r("/v3/images/{image_id}/enhanced", "enhanced", downloads.enhanced, ["GET"], auth=True),
        r("/v3/images/{image_id}/original", "original", downloads.original, ["GET"]),
        r("/v3/images/{image_id}/preview", "preview", downloads.preview, ["GET"]),
        r("/assets/loop/{image_id}", "redirect_loop", downloads.redirect_loop, ["GET"]),
        r("/assets/{token}", "asset", downloads.asset, ["GET"]),
        r("/uploads/brackets/{bracket_id}", "bracket_upload", uploads.upload_bracket, ["PUT"]),
        r("/uploads/{image_id}", "upload", uploads.upload, ["PUT"]),
        r("/s3/{image_id}", "upload", uploads.s3_upload, ["PUT"]),
    ]
