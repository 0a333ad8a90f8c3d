"""The out-of-process control API under /_simulator/: seed orders, inject faults, read counters.

Used by the benchmarks and by anyone driving `python -m simulator` from another process. No auth:
the simulator only ever listens on loopback or inside the service.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from simulator.demo import sample_seeds
from simulator.errors import ValidationFailed
from simulator.faults import Fault
from simulator.jsonbody import JSONResponse
from simulator.records import WebhookTarget
from simulator.state import SeedImage, SimulatorState
from simulator.validation import IMAGE_SORTS, json_object

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_SEED_FIELDS = {"name", "size", "status", "status_reason", "image_id"}
_FAULT_FIELDS = {f.name for f in dataclasses.fields(Fault) if f.name not in {"fired", "claimed"}}
_CONFIG_FIELDS = {"download_latency", "max_concurrent_downloads", "processing_seconds", "api_version"}


def _sim(request: Request) -> SimulatorState:
    return request.app.state.simulator  # type: ignore[no-any-return]


def _reject_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed("json", {name: ["Unknown field."] for name in unknown})


async def seed_order(request: Request) -> Response:
    """{order_id?, name?, images: [{name, size?, status?, status_reason?, image_id?}], samples?}"""
    body = json_object(await request.body())
    _reject_unknown(body, {"order_id", "name", "images", "samples"})
    images = body.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        raise ValidationFailed("json", {"images": ["Not a valid list of objects."]})
    try:
        seeds: list[SeedImage] = []
        for item in images:
            _reject_unknown(item, _SEED_FIELDS)
            seeds.append(SeedImage(**item))
        if body.get("samples"):
            seeds.extend(sample_seeds())
        order = _sim(request).seed_order(order_id=body.get("order_id"), name=body.get("name"), images=seeds)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed("json", {"_schema": [str(exc)]}) from None
    return JSONResponse(order, 201)


async def add_fault(request: Request) -> Response:
    body = json_object(await request.body())
    _reject_unknown(body, _FAULT_FIELDS)
    try:
        fault = _sim(request).add_fault(Fault(**body))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed("json", {"_schema": [str(exc)]}) from None
    return JSONResponse(fault.to_json(), 201)


async def list_faults(request: Request) -> Response:
    return JSONResponse([f.to_json() for f in _sim(request).faults.snapshot()])


async def clear_faults(request: Request) -> Response:
    _sim(request).clear_faults()
    return Response(status_code=204)


async def get_stats(request: Request) -> Response:
    return JSONResponse(_sim(request).stats.snapshot())


async def reset_stats(request: Request) -> Response:
    state = _sim(request)
    state.reset_stats()
    return JSONResponse(state.stats.snapshot())


async def get_requests(request: Request) -> Response:
    """The last API requests, oldest first: [{method, path, query}] (cleared by stats/reset)."""
    return JSONResponse(list(_sim(request).request_log))


async def get_config(request: Request) -> Response:
    return JSONResponse(_sim(request).config())


async def put_config(request: Request) -> Response:
    body = json_object(await request.body())
    _reject_unknown(body, _CONFIG_FIELDS)
    errors: dict[str, list[str]] = {}
    for name in ("download_latency", "processing_seconds"):
        if name in body and (not isinstance(body[name], int | float) or isinstance(body[name], bool) or body[name] < 0):
            errors[name] = ["Must be a number >= 0."]
    limit = body.get("max_concurrent_downloads")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        errors["max_concurrent_downloads"] = ["Must be null or an integer >= 1."]
    version = body.get("api_version")
    if version is not None and (not isinstance(version, str) or not _DATE.match(version)):
        errors["api_version"] = ["Must be null (lenient) or a date YYYY-MM-DD."]
    if errors:
        raise ValidationFailed("json", errors)
    return JSONResponse(_sim(request).configure(**body))


async def arrange_order(request: Request) -> Response:
    """{default_image_sort_order?, custom_order?: [image ids]}: what the photographer does in the web app."""
    body = json_object(await request.body())
    _reject_unknown(body, {"default_image_sort_order", "custom_order"})
    sort, custom = body.get("default_image_sort_order"), body.get("custom_order")
    errors: dict[str, list[str]] = {}
    if sort is not None and sort not in IMAGE_SORTS:
        errors["default_image_sort_order"] = [f"Must be one of: {', '.join(IMAGE_SORTS)}."]
    if custom is not None and (not isinstance(custom, list) or not all(isinstance(i, str) for i in custom)):
        errors["custom_order"] = ["Must be a list of image ids."]
    if errors:
        raise ValidationFailed("json", errors)
    state = _sim(request)
    return JSONResponse(state.order_json(state.arrange(request.path_params["order_id"], sort, custom)))


async def get_webhook(request: Request) -> Response:
    state = _sim(request)
    target = state.webhook
    return JSONResponse({"webhook": target.to_json() if target else None, "sent": state.webhook_log})


async def put_webhook(request: Request) -> Response:
    """{url, token?}: POST Autoenhance's webhook events to `url` (with `token` in Authorization)."""
    body = json_object(await request.body())
    _reject_unknown(body, {"url", "token"})
    url, token = body.get("url"), body.get("token")
    errors: dict[str, list[str]] = {}
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        errors["url"] = ["Must be an http(s) URL."]
    if token is not None and not isinstance(token, str):
        errors["token"] = ["Must be a string or null."]
    if errors:
        raise ValidationFailed("json", errors)
    target = WebhookTarget(url=str(url), token=token)
    _sim(request).set_webhook(target)
    return JSONResponse({"webhook": target.to_json()})


async def delete_webhook(request: Request) -> Response:
    _sim(request).set_webhook(None)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/_simulator/orders", seed_order, methods=["POST"]),
        Route("/_simulator/orders/{order_id}/arrangement", arrange_order, methods=["PUT"]),
        Route("/_simulator/faults", add_fault, methods=["POST"]),
        Route("/_simulator/faults", list_faults, methods=["GET"]),
        Route("/_simulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_simulator/stats", get_stats, methods=["GET"]),
        Route("/_simulator/stats/reset", reset_stats, methods=["POST"]),
        Route("/_simulator/requests", get_requests, methods=["GET"]),
        Route("/_simulator/config", get_config, methods=["GET"]),
        Route("/_simulator/config", put_config, methods=["PUT"]),
        Route("/_simulator/webhook", get_webhook, methods=["GET"]),
        Route("/_simulator/webhook", put_webhook, methods=["PUT"]),
        Route("/_simulator/webhook", delete_webhook, methods=["DELETE"]),
    ]
