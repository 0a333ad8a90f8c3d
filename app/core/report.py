"""The human report and the machine manifest written as the archive's last members, and the one
summary both are made from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from app.core.models import BatchOptions, OrderInfo
from app.core.naming import MANIFEST_NAME, REPORT_NAME
from app.core.zip.layout import LayoutMember
from app.errors import ImageFailure


@dataclass
class Summary:
    """What one archive holds and misses: a live batch keeps it as it streams, a resume completing a
    recorded layout builds it, and the report and the manifest are both written from it."""

    order: OrderInfo
    options: BatchOptions
    photos: int
    """Photos in the (chosen) order, entries without an id included."""
    total: int
    """Files planned: one per photo and delivery set (entries without an id count once)."""
    downloaded: int = 0
    failures: list[ImageFailure] = field(default_factory=list)
    files: list[dict[str, object]] = field(default_factory=list)
    """The manifest's `files`, one entry per image member written (see `sent`)."""
    retry_hint: str | None = None
    """How the report tells its reader to fetch what failed (None: the service's URL)."""

    @property
    def failed(self) -> int:
        return len(self.failures)

    def fail(self, image_id: str, name: str, reason: str, recovery: str, set_name: str | None = None) -> ImageFailure:
        """One file the archive misses; `{image_id}` in the recovery names the image."""
        failure = ImageFailure(image_id, name, reason, recovery.replace("{image_id}", image_id), set_name)
        self.failures.append(failure)
        return failure

    def sent(self, member: LayoutMember, set_name: str) -> None:
        """One image member in the archive: its manifest entry (the only place one is made)."""
        self.files.append({"image_id": member.image_id, "name": member.name, "set": set_name, "bytes": member.size})


def _in_order(summary: Summary) -> tuple[list[dict[str, object]], list[ImageFailure]]:
    """Files and failures in the photographer's order (the order's images, then the sets), not in
    the order the downloads happened to finish."""
    place = {image.image_id: index for index, image in enumerate(summary.order.images)}
    sets = {name: index for index, name in enumerate(summary.options.sets)}
    unknown = len(place)

    def file_key(member: dict[str, object]) -> tuple[int, int]:
        return place.get(str(member.get("image_id")), unknown), sets.get(str(member.get("set")), 0)

    def failure_key(failure: ImageFailure) -> tuple[int, int]:
        return place.get(failure.image_id, unknown), sets.get(failure.set or "", 0)

    return sorted(summary.files, key=file_key), sorted(summary.failures, key=failure_key)


def _retry_url(summary: Summary) -> str:
    o = summary.options
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
    if summary.order.sort is not None:
        query += f"&sort={summary.order.sort}"
    if o.images:
        query += f"&images={','.join(o.images)}"
    if o.dpi is not None:
        query += f"&dpi={o.dpi}"
    if o.template is not None:
        query += f"&template={quote(o.template, safe='')}"
    return f"GET /orders/{summary.order.order_id}/images?{query}"


def report_text(summary: Summary) -> str:
    """`_download_report.txt`: what failed, why, and how to get it."""
    order = summary.order
    lines = [
        "Autoenhance Batch download report",
        "=================================",
        f"Order:      {order.name or '(unnamed)'} ({order.order_id})",
        f"Generated:  {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"Options:    {json.dumps(summary.options.as_dict())}",
        f"Photo order: {summary.order.sort or 'as Autoenhance lists them'}",
        f"API version: {summary.order.api_version or 'the account default'}",
        "",
        f"Photos in order: {summary.photos}"
        + (f" (chosen with images=, of {summary.order.listed})" if summary.order.listed is not None else ""),
        f"Sets:            {', '.join(summary.options.sets)}",
        f"Files planned:   {summary.total}",
        f"Downloaded:      {summary.downloaded}",
        f"Failed:          {summary.failed}",
        "",
        "Failed images",
        "-------------",
    ]
    for number, failure in enumerate(_in_order(summary)[1], start=1):
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
    if summary.retry_hint:  # the command line's own way, where it made the batch
        lines += [f"- {summary.retry_hint}"]
    else:
        lines += [
            f"- Retry the whole batch once the images are ready: {_retry_url(summary)}",
            "  Archives with failures are never cached, so a retry really asks Autoenhance again.",
            "- Or fetch one image directly from Autoenhance: GET /v3/images/<image id>/enhanced",
        ]
    lines += [""]
    return "\n".join(lines)


def manifest_json(summary: Summary) -> str:
    """`_manifest.json`: which file is which image, for integrations that map ids to files."""
    files, failures = _in_order(summary)
    return json.dumps(
        {
            "order_id": summary.order.order_id,
            "order_name": summary.order.name,
            "api_version": summary.order.api_version,
            "image_order": summary.order.sort,
            "options": summary.options.as_dict(),
            "photos": summary.photos,
            "sets": list(summary.options.sets),
            "total": summary.total,
            "downloaded": summary.downloaded,
            "failed": summary.failed,
            "files": files,
            "failures": [f.as_dict() for f in failures],
        },
        indent=2,
        ensure_ascii=False,
    )


def closing_files(summary: Summary) -> list[tuple[str, bytes]]:
    """The archive's last members, as a live batch and a resume both write them: the report (only
    when something failed), then the manifest."""
    files: list[tuple[str, bytes]] = []
    if summary.failures:
        files.append((REPORT_NAME, report_text(summary).encode()))
    files.append((MANIFEST_NAME, manifest_json(summary).encode()))
    return files
