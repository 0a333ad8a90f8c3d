"""Shared route plumbing: per-route counting and auth, URL bases, small response helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.errors import ApiError, Unauthorized
from simulator.state import ROUTE_NAMES, SimulatorState
from simulator.validation import json_object
from simulator.versions import ApiVersion, served

Endpoint = Callable[[Request], Awaitable[Response]]


def sim(request: Request) -> SimulatorState:
    return request.app.state.simulator  # type: ignore[no-any-return]


def endpoint_for(name: str, handler: Endpoint, *, auth: bool = False) -> Endpoint:
    """Count the request under `name` and enforce x-api-key when `auth`."""

    async def endpoint(request: Request) -> Response:
        state = sim(request)
        state.count(name)
        if auth and not state.check_key(request.headers.get("x-api-key")):
            raise Unauthorized()
        return await handler(request)

    endpoint.__name__ = name
    return endpoint


def route(path: str, name: str, handler: Endpoint, methods: list[str], *, auth: bool = False) -> Route:
    if name not in ROUTE_NAMES:
        raise ValueError(f"route name {name!r} missing from state.ROUTE_NAMES")
    return Route(path, endpoint_for(name, handler, auth=auth), methods=methods, name=name)


def api_version(request: Request) -> ApiVersion:
    """The API version this request is served: `x-api-version`, else the account's."""
    return served(request.headers.get("x-api-version"), sim(request).api_version)


def public_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def asset_base(request: Request) -> str:
    return sim(request).asset_base_url or public_base(request)


async def json_body(request: Request) -> dict[str, Any]:
    return json_object(await request.body())


def too_many(retry_after: float | None) -> Response:
    headers = {"Retry-After": seconds_header(retry_after)} if retry_after is not None else None
    return ApiError(429, headers=headers).response()


def seconds_header(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
