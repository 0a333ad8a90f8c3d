"""The human report and the machine manifest written as the archive's last members."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

from app.core.models import BatchOptions, OrderInfo
from app.core.naming import MANIFEST_NAME, REPORT_NAME
from app.errors import ImageFailure


class Batch(Protocol):
    """What the report needs of a batch (a live one, or a resume completing a recorded layout)."""

    order: OrderInfo
    options: BatchOptions
    photos: int
    total: int
    downloaded: int
    failures: list[ImageFailure]
    members: list[dict[str, object]]

    @property
    def failed(self) -> int: ...


def _in_order(batch: Batch) -> tuple[list[dict[str, object]], list[ImageFailure]]:
    """Files and failures in the photographer's order (the order's images, then the sets), not in
    the order the downloads happened to finish."""
    place = {image.image_id: index for index, image in enumerate(batch.order.images)}
    sets = {name: index for index, name in enumerate(batch.options.sets)}
    unknown = len(place)

    def file_key(member: dict[str, object]) -> tuple[int, int]:
        return place.get(str(member.get("image_id")), unknown), sets.get(str(member.get("set")), 0)

    def failure_key(failure: ImageFailure) -> tuple[int, int]:
        return place.get(failure.image_id, unknown), sets.get(failure.set or "", 0)

    return sorted(batch.members, key=file_key), sorted(batch.failures, key=failure_key)


def _retry_url(batch: Batch) -> str:
    o = batch.options
    query = f"format={o.format.value}&preview={str(o.preview).lower()}&dev_mode={str(o.dev_mode).lower()}"
    if o.quality is not None:
        query += f"&quality={o.quality}"
    if o.max_width is not None:
        query += f"&max_width={o.max_width}"
    if o.scale is not None:
        query += f"&scale={o.scale:g}"
    if o.sets != ("full",):
        query += f"&sets={','.join(o.sets)}"
    if o.names.value != "original":
        query += f"&names={o.names.value}"
    if batch.order.sort is not None:
        query += f"&sort={batch.order.sort}"
    if o.images:
        query += f"&images={','.join(o.images)}"
    if o.dpi is not None:
        query += f"&dpi={o.dpi}"
    if o.template is not None:
        query += f"&template={quote(o.template, safe='')}"
    return f"GET /orders/{batch.order.order_id}/images?{query}"


def report_text(batch: Batch) -> str:
    """`_download_report.txt`: what failed, why, and how to get it."""
    order = batch.order
    lines = [
        "Autoenhance Batch download report",
        "=================================",
        f"Order:      {order.name or '(unnamed)'} ({order.order_id})",
        f"Generated:  {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"Options:    {json.dumps(batch.options.as_dict())}",
        f"Photo order: {batch.order.sort or 'as Autoenhance lists them'}",
        f"API version: {batch.order.api_version or 'the account default'}",
        "",
        f"Photos in order: {batch.photos}"
        + (f" (chosen with images=, of {batch.order.listed})" if batch.order.listed is not None else ""),
        f"Sets:            {', '.join(batch.options.sets)}",
        f"Files planned:   {batch.total}",
        f"Downloaded:      {batch.downloaded}",
        f"Failed:          {batch.failed}",
        "",
        "Failed images",
        "-------------",
    ]
    for number, failure in enumerate(_in_order(batch)[1], start=1):
        lines += [
            f"{number}. {failure.name}  (image id {failure.image_id}"
            + (f", set {failure.set})" if failure.set else ")"),
            f"   Reason:  {failure.reason}",
            f"   Recover: {failure.recovery}",
        ]
    lines += [
        "",
        "How to recover",
        "--------------",
    ]
    hint = getattr(batch, "retry_hint", None)  # the command line's own way, where it made the batch
    if hint:
        lines += [f"- {hint}"]
    else:
        lines += [
            f"- Retry the whole batch once the images are ready: {_retry_url(batch)}",
            "  Archives with failures are never cached, so a retry really asks Autoenhance again.",
            "- Or fetch one image directly from Autoenhance: GET /v3/images/<image id>/enhanced",
        ]
    lines += [""]
    return "\n".join(lines)


def manifest_json(batch: Batch) -> str:
    """`_manifest.json`: which file is which image, for integrations that map ids to files."""
    files, failures = _in_order(batch)
    return json.dumps(
        {
            "order_id": batch.order.order_id,
            "order_name": batch.order.name,
            "api_version": batch.order.api_version,
            "image_order": batch.order.sort,
            "options": batch.options.as_dict(),
            "photos": batch.photos,
            "sets": list(batch.options.sets),
            "total": batch.total,
            "downloaded": batch.downloaded,
            "failed": batch.failed,
            "files": files,
            "failures": [f.as_dict() for f in failures],
        },
        indent=2,
        ensure_ascii=False,
    )


def closing_files(batch: Batch) -> list[tuple[str, bytes]]:
    """The archive's last members, as a live batch and a resume both write them: the report (only
    when something failed), then the manifest."""
    files: list[tuple[str, bytes]] = []
    if batch.failures:
        files.append((REPORT_NAME, report_text(batch).encode()))
    files.append((MANIFEST_NAME, manifest_json(batch).encode()))
    return files
