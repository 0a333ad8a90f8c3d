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
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator import control, downloads, uploads
from simulator.errors import ApiError
from simulator.jsonbody import JSONResponse
from simulator.plumbing import asset_base, json_body, route, seconds_header, sim
from simulator.records import ImageRecord
from simulator.state import SimulatorState
from simulator.validation import (
    BRACKET_IN,
    IMAGE_IN,
    IMAGE_IN_UPDATE,
    LIST_QUERY,
    ORDER_IN,
    ORDER_PROCESS_IN,
    REPORT_IN,
    parse_fields,
)
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
    """Remember each /v3/ request (method, path, query) in `state.request_log`; read at /_simulator/requests."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v3/"):
            query = scope.get("query_string", b"").decode("latin-1")
            self.state.request_log.append({"method": scope["method"], "path": scope["path"], "query": query})
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
    return JSONResponse(state.order_json(order))


async def list_orders(request: Request) -> Response:
    query = parse_fields("query", request.query_params, LIST_QUERY)
    return JSONResponse(sim(request).list_orders(query.get("per_page") or 5, query.get("offset")))


async def get_order(request: Request) -> Response:
    state = sim(request)
    order_id = request.path_params["order_id"]
    if fault := state.faults.take("order_latency", order_id=order_id):
        await asyncio.sleep(fault.seconds)
    if fault := state.faults.take("order_status", order_id=order_id):
        headers = {"Retry-After": seconds_header(fault.retry_after)} if fault.retry_after is not None else None
        return ApiError(fault.status, headers=headers).response()
    if state.faults.take("order_not_json", order_id=order_id):
        return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", 200, media_type="text/html")
    if fault := state.faults.take("order_payload", order_id=order_id):
        return JSONResponse(fault.payload)
    return JSONResponse(state.order_json(state.get_order(order_id)))


async def update_order(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), ORDER_IN)
    order = state.rename_order(request.path_params["order_id"], fields.get("name"))
    return JSONResponse(state.order_json(order))


async def delete_order(request: Request) -> Response:
    sim(request).delete_order(request.path_params["order_id"])
    return Response(status_code=204)


async def process_order(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), ORDER_PROCESS_IN)
    return JSONResponse(state.order_json(state.process_order(request.path_params["order_id"], fields)))


async def merge_order(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), ORDER_PROCESS_IN)
    return JSONResponse(state.order_json(state.merge_order(request.path_params["order_id"], fields)))


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


def _upload_urls(request: Request, image: ImageRecord) -> dict[str, str]:
    base = asset_base(request)
    s3_query = {"X-Amz-Expires": "3600", "X-Amz-Signature": image.upload_token}
    if image.content_type:
        s3_query["content-type"] = image.content_type
    return {
        "upload_url": f"{base}/uploads/{image.image_id}?token={image.upload_token}",
        "s3PutObjectUrl": f"{base}/s3/{image.image_id}?{urlencode(s3_query)}",
    }


async def create_image(request: Request) -> Response:
    state = sim(request)
    image = state.create_image(parse_fields("json", await json_body(request), IMAGE_IN))
    return JSONResponse({**state.image_json(image), **_upload_urls(request, image)})


async def get_image(request: Request) -> Response:
    state = sim(request)
    return JSONResponse(state.image_json(state.get_image(request.path_params["image_id"])))


async def delete_image(request: Request) -> Response:
    sim(request).delete_image(request.path_params["image_id"])
    return Response(status_code=204)


async def process_image(request: Request) -> Response:
    state = sim(request)
    fields = parse_fields("json", await json_body(request), IMAGE_IN_UPDATE)
    return JSONResponse(state.image_json(state.reprocess(request.path_params["image_id"], fields)))


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
