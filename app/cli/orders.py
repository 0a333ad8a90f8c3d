"""Orders by name in direct mode: `autoenhance-batch orders --search oak`, and `download "12 Oak Street"`.

A photographer knows the address, not the order's UUID. Autoenhance searches its orders by name
(`q` on GET /v3/orders/), so the command asks it, walks at most MAX_PAGES pages, and a download
by name goes ahead only when the name picks one order: the one whose name is exactly the text
(case aside), else the only one that contains it. Otherwise the matches are listed, with their ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.cli.transfer import TransferError
from app.core.upstream.client import AutoenhanceClient
from app.errors import ServiceError, UpstreamAuthError

PER_PAGE = 15
"""Autoenhance's page-size limit."""
MAX_PAGES = 4
"""60 orders at most: a search that finds more should be narrowed, not scrolled."""
MAX_NAME = 200


class OrderLookupError(Exception):
    """The search could not pick one order; the message says why and lists what it found."""


@dataclass(frozen=True)
class FoundOrder:
    order_id: str
    name: str | None
    created_at: str | None
    images: int | None
    status: str | None

    def line(self) -> str:
        when = (self.created_at or "")[:10] or "?"
        images = "?" if self.images is None else str(self.images)
        return f"{self.order_id}  {when}  {images:>4} photos  {self.name or '(unnamed)'}"


def _found(raw: Any) -> FoundOrder | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("order_id"), str):
        return None
    images = raw.get("total_images")
    if not isinstance(images, int) or isinstance(images, bool):
        images = len(raw["images"]) if isinstance(raw.get("images"), list) else None
    name = raw.get("name")
    return FoundOrder(
        order_id=raw["order_id"],
        name=str(name) if name is not None else None,
        created_at=str(raw["created_at"]) if raw.get("created_at") else None,
        images=images,
        status=str(raw["status"]) if raw.get("status") is not None else None,
    )


async def find_orders(
    client: AutoenhanceClient, search: str | None, *, sort: str | None = None, limit: int = PER_PAGE
) -> tuple[list[FoundOrder], bool]:
    """Orders whose name contains `search` (all, without one), up to `limit`; and whether more exist."""
    found: list[FoundOrder] = []
    offset: str | None = None
    for _ in range(MAX_PAGES):
        page = await client.list_orders(per_page=PER_PAGE, offset=offset, q=search or None, sort=sort)
        orders = page.get("orders")
        found += [order for order in map(_found, orders if isinstance(orders, list) else []) if order is not None]
        pagination = page.get("pagination")
        offset = pagination.get("next_offset") if isinstance(pagination, dict) else None
        if not offset or len(found) >= limit:
            break
    return found[:limit], bool(offset) or len(found) > limit


def pick(name: str, found: list[FoundOrder], more: bool) -> FoundOrder:
    """The one order `name` names, or an OrderLookupError listing the candidates."""
    exact = [order for order in found if (order.name or "").strip().casefold() == name.strip().casefold()]
    if len(exact) == 1:
        return exact[0]
    if not exact and len(found) == 1 and not more:
        return found[0]
    if not found:
        raise OrderLookupError(f"No order's name contains {name!r}; try `autoenhance-batch orders --search` with less")
    candidates = exact or found
    listing = "\n".join(f"  {order.line()}" for order in candidates)
    also = "\n  (and more: narrow the search)" if more and not exact else ""
    raise OrderLookupError(f"{len(candidates)} orders match {name!r}; download one by its id:\n{listing}{also}")


async def resolve_order_name(client: AutoenhanceClient, name: str, say: Callable[[str], None]) -> str:
    """The id of the one order `name` names (ServiceErrors and ambiguity become a TransferError)."""
    text = name.strip()
    if not text or len(text) > MAX_NAME or not text.isprintable():
        raise TransferError(f"Give an order id (a UUID) or an order's name (1-{MAX_NAME} printable characters)")
    try:
        found, more = await find_orders(client, text, limit=PER_PAGE * MAX_PAGES)
        order = pick(text, found, more)
    except OrderLookupError as exc:
        raise TransferError(str(exc)) from None
    except UpstreamAuthError:
        raise TransferError("Autoenhance rejected the API key (check --api-key or AUTOENHANCE_API_KEY)") from None
    except ServiceError as exc:
        raise TransferError(exc.message) from None
    say(f"Order {order.name!r} is {order.order_id}")
    return order.order_id
