"""What the page shows before anything is downloaded: the order's photos, thumbnails and the credit cost.

- GET /orders/{order_id}/photos: name, each photo (id, name, status, whether it can be downloaded),
  and for the options in the query the cost in Autoenhance credits (app/core/delivery/sets.py).
- GET /images/{image_id}/thumbnail: a small JPEG from Autoenhance's free preview (or the original
  while the photo is still being enhanced), so a photographer sees which order this is.

Both are guarded like the download itself (SERVICE_API_KEY) and cost no credit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.api.deps import COMMON_ERRORS, OptionsDep, OrderIdPath, ServicesDep, delivery_sets, load_order
from app.api.responses import error
from app.api.security import ServiceKey, credit_refusal
from app.core.delivery.selection import choose, selected
from app.core.delivery.sets import catalogue, credit_cost
from app.core.delivery.thumbnails import THUMBNAIL_WIDTH, thumbnail_bytes
from app.errors import InvalidOption, NotFound


class ImageNotFound(NotFound):
    pass


router = APIRouter(tags=["batch"], dependencies=[ServiceKey])

_IMAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@router.get(
    "/orders/{order_id}/photos",
    summary="The order's photos and what a download with these options would cost",
    responses={k: v for k, v in COMMON_ERRORS.items() if k != 422} | {422: error("Bad options (an unknown set, say)")},
)
async def order_photos(
    order_id: OrderIdPath, options: OptionsDep, services: ServicesDep, request: Request
) -> dict[str, Any]:
    order = await load_order(order_id, services, options.sort)  # thumbnails in the photographer's order
    options = choose(order, options)  # images=: 422 for one that names no photo
    chosen = set(options.images)
    refusal = credit_refusal(services.settings, options, request.headers.get("x-api-key"))
    photos = [
        {
            "image_id": image.image_id,
            "name": image.name,
            "status": image.status,
            "ready": reason is None,
            "reason": reason,
            "chosen": not chosen or image.image_id in chosen,
            "thumbnail_url": f"images/{image.image_id}/thumbnail",
        }
        for image in order.images
        for reason in [image.skip_reason()]
    ]
    return {
        "order_id": order.order_id,
        "name": order.name,
        "photos": photos,
        "total": len(photos) + order.unidentified,
        "ready": sum(p["ready"] is True for p in photos),
        "sets": list(options.sets),
        "chosen": sum(p["chosen"] is True for p in photos),
        # `refused`: why the download with these options would be a 403 (None: it is allowed)
        "cost": credit_cost(len(selected(order, options).images), options).as_dict()
        | {"refused": refusal and refusal.message},
    }


@router.get(
    "/api/sets",
    summary="The delivery sets this service offers (for sets=)",
    description="Each set's name, what it asks Autoenhance for (format, quality, width, dpi) and whether it "
    "downloads full resolution (then it spends a credit per photo unless dev_mode). `full` is shaped by the "
    "request's own options.",
    responses={401: COMMON_ERRORS[401]},
)
async def list_delivery_sets(request: Request) -> dict[str, Any]:
    return {"sets": catalogue(delivery_sets(request))}


@router.get(
    "/images/{image_id}/thumbnail",
    summary="A small JPEG of one photo (free: Autoenhance's preview, or the original while it is enhanced)",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": f"JPEG at most {THUMBNAIL_WIDTH} px wide"},
        404: error("Autoenhance has neither a preview nor an original of this image"),
        422: error("Not an image id"),
    },
)
async def thumbnail(
    image_id: Annotated[str, Path(description="An image id from GET /orders/{order_id}/photos")],
    services: ServicesDep,
) -> Response:
    if not _IMAGE_ID.match(image_id):
        raise InvalidOption("Not an image id")
    body = await thumbnail_bytes(services.client, services.settings.spool_dir, image_id)
    if body is not None:
        return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
    raise ImageNotFound("Autoenhance has no preview or original of this image yet")
