"""GET /api/orders: the account's orders, a page at a time, searched by name, for the web page's picker.

Guarded like order creation (admin token; open in demo mode): knowing an order id is what lets a
visitor download it, so the listing of every id in the account is for the operator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.api.deps import ServicesDep
from app.api.responses import error
from app.api.security import AdminToken
from app.errors import UpstreamBadResponse

router = APIRouter(tags=["orders"], dependencies=[AdminToken])

MAX_PER_PAGE = 15
"""Autoenhance's own page-size limit (the SDK validates `per_page <= 15`)."""


class OrderSort(StrEnum):
    """Autoenhance's order-list sorts: by name, or by date (`-date`, newest first, is its default)."""

    by_name = "name"
    by_name_reversed = "-name"
    oldest_first = "date"
    newest_first = "-date"


class OrderSummary(BaseModel):
    order_id: str
    name: str | None
    created_at: str | None
    status: str | None
    total_images: int | None


class OrderPage(BaseModel):
    orders: list[OrderSummary]
    next_offset: str | None
    per_page: int


def _summary(raw: Any) -> OrderSummary | None:
    if not isinstance(raw, dict) or not (raw.get("order_id") or raw.get("id")):
        return None
    images = raw.get("images")
    total = raw.get("total_images")
    if not isinstance(total, int | float):
        total = len(images) if isinstance(images, list) else None
    return OrderSummary(
        order_id=str(raw.get("order_id") or raw.get("id")),
        name=str(raw["name"]) if raw.get("name") is not None else None,
        created_at=str(raw["created_at"]) if raw.get("created_at") else None,
        status=str(raw["status"]) if raw.get("status") is not None else None,
        total_images=int(total) if total is not None else None,
    )


@router.get(
    "/api/orders",
    summary="The account's orders, searched by name (`q`) and sorted, one page at a time",
    description="`q` keeps the orders whose name contains it (Autoenhance's own search: an address works); "
    "`sort` is name, -name, date or -date (default -date, newest first). Pass the previous page's `next_offset` "
    "as `offset` for the next page, with the same `q` and `sort`; `next_offset` is null on the last page. "
    "Needs X-Admin-Token when ADMIN_TOKEN is set (open in demo mode).",
    response_model=OrderPage,
    responses={
        401: error("ADMIN_TOKEN is set and X-Admin-Token is missing or wrong"),
        403: error("Live mode without ADMIN_TOKEN: the order listing is disabled"),
        422: error("`offset` is not a page token of the listing (or another option is out of range)"),
        502: error("Autoenhance refused or failed the listing"),
    },
)
async def list_orders(
    services: ServicesDep,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Orders per page (1-15)")] = 5,
    offset: Annotated[
        str | None, Query(max_length=512, description="The `next_offset` of the previous page")
    ] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Text the order's name contains, e.g. 'oak'")
    ] = None,
    sort: Annotated[OrderSort | None, Query(description="name, -name, date or -date (default: -date)")] = None,
) -> OrderPage:
    q = q.strip() if q else None
    data = await services.client.list_orders(
        per_page=per_page, offset=offset, q=q or None, sort=sort.value if sort is not None else None
    )
    raw_orders = data.get("orders")
    if not isinstance(raw_orders, list):
        raise UpstreamBadResponse("Autoenhance returned an order listing this service cannot read")
    pagination = data.get("pagination") if isinstance(data.get("pagination"), dict) else {}
    next_offset = pagination.get("next_offset") if pagination else None
    orders = [summary for summary in map(_summary, raw_orders) if summary is not None]
    return OrderPage(orders=orders, next_offset=str(next_offset) if next_offset else None, per_page=per_page)
