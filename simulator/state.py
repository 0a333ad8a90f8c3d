"""The simulator's in-memory world: orders, images, brackets, faults, counters, asset grants.

Thread-safe on purpose: tests seed and inspect it from their own thread while uvicorn serves it
from another. The lifecycle is lazy and timestamp-driven (an uploaded image is "processing"
until `processing_seconds` have passed, then shows "processed" on the next read), so it needs no
background tasks and is deterministic. Seeded statuses are fixed: an image seeded "processing"
stays so (use a `not_ready` fault with `times` for "ready later").
"""

from __future__ import annotations

import base64
import binascii
import collections
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from simulator import imaging, renders, synthetic
from simulator.errors import ApiError, Conflict, NotFound, ValidationFailed
from simulator.faults import Fault, FaultBook
from simulator.records import (
    DEFAULT_SETTINGS,
    BracketRecord,
    ImageRecord,
    OrderRecord,
    WebhookTarget,
    fold_sky,
    iso,
    order_status,
)
from simulator.versions import LENIENT, ApiVersion, parse_version

SEED_STATUSES = ("processed", "processing", "waiting", "error")
DEFAULT_SYNTHETIC_SIZE = 64 * 1024
UNSUPPORTED_REASON = "Unsupported image format"
UPLOAD_DROPPED_REASON = "Dropped from memory to make room for newer uploads; upload it again"
SEEDED_ERROR_REASON = "Enhancement failed"

ROUTE_NAMES = (
    "order_create", "order_list", "order_get", "order_update", "order_delete", "order_process", "order_merge",
    "order_brackets", "bracket_create", "bracket_upload", "image_create", "image_get", "image_delete",
    "image_process", "image_report", "enhanced", "original", "preview", "asset", "redirect_loop", "upload",
    "image_premium",
)  # fmt: skip
"""Route names counted in `stats` (one counter each, present from the start)."""

REQUEST_LOG_SIZE = 2000

STAT_KEYS = (
    *ROUTE_NAMES,
    "asset_requests_with_api_key",
    "peak_concurrent_downloads",
    "concurrent_downloads",
    "rate_limited",
    "credits_spent",
    "asset_bytes",
    "webhooks_sent",
    "webhooks_failed",
)


@dataclass
class SeedImage:
    """An image to put straight into an order. `data` = a real photo; `size` = synthetic bytes.

    With neither, a synthetic image of DEFAULT_SYNTHETIC_SIZE bytes is used.
    """

    name: str | None = None
    data: bytes | None = None
    size: int | None = None
    status: str = "processed"
    status_reason: str | None = None
    image_id: str | None = None


@dataclass(frozen=True)
class AssetGrant:
    """What an /assets/<token> URL serves; `spec` None means the original bytes as uploaded."""

    image_id: str
    version: int
    kind: Literal["enhanced", "original"]
    spec: imaging.RenderSpec | None
    content_type: str
    expires_at: float


class Stats(Counter[str]):
    """Request counters per route name plus the download gauges; missing keys read as 0."""

    def snapshot(self) -> dict[str, int]:
        return dict(self)


class SimulatorState:
    """Everything the simulated Autoenhance API knows. See the package docstring for the API."""

    def __init__(
        self,
        api_keys: set[str] | None = None,
        processing_seconds: float = 0.0,
        asset_base_url: str | None = None,
        download_latency: float = 0.0,
        max_concurrent_downloads: int | None = None,
        *,
        asset_ttl_seconds: float = 600.0,
        max_upload_bytes: int | None = None,
        max_upload_pixels: int | None = None,
        upload_store_bytes: int | None = None,
        api_version: str | None = None,
    ) -> None:
        self.api_version = parse_version(api_version) if api_version is not None else None
        """The account's API version, served to requests without `x-api-version` (None: lenient)."""
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.processing_seconds = processing_seconds
        self.asset_base_url = asset_base_url.rstrip("/") if asset_base_url else None
        self.download_latency = download_latency
        self.max_concurrent_downloads = max_concurrent_downloads
        self.asset_ttl_seconds = asset_ttl_seconds
        self.max_upload_bytes = max_upload_bytes
        """A PUT to an upload URL over this many bytes is refused (S3's EntityTooLarge); None: any size."""
        self.max_upload_pixels = max_upload_pixels
        """An upload with more pixels (read from its header) is kept as an error, never decoded; None: any."""
        self.upload_store_bytes = upload_store_bytes
        """Uploaded photos held in memory at most; the oldest are dropped (`expired`) past it. None: all kept."""
        self._uploaded: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.orders: dict[str, OrderRecord] = {}
        self.images: dict[str, ImageRecord] = {}
        self.brackets: dict[str, BracketRecord] = {}
        self.faults = FaultBook()
        self.stats = Stats({key: 0 for key in STAT_KEYS})
        self.assets_served: Counter[str] = Counter()
        """Asset downloads started, by image id: shows which images a batch or a resume fetched."""
        self.renderer = renders.shared()
        self._grants: dict[str, AssetGrant] = {}
        self._seq = 0
        self._lock = threading.RLock()
        self.webhook: WebhookTarget | None = None
        self.webhook_log: list[dict[str, Any]] = []
        self.request_log: collections.deque[dict[str, str | None]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        """The last API requests (method, path, query), for tests that check what a client asked."""
        self._webhook_queue: list[dict[str, Any]] = []

    # ---- configuration, faults, counters --------------------------------------------------

    def check_key(self, key: str | None) -> bool:
        """None api_keys: any non-empty key; else only the listed keys."""
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change download_latency, max_concurrent_downloads, processing_seconds or api_version at run time."""
        allowed = {"download_latency", "max_concurrent_downloads", "processing_seconds", "api_version"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            if name == "api_version" and value is not None:
                value = parse_version(value)
            setattr(self, name, value)
        return self.config()

    def config(self) -> dict[str, Any]:
        return {
            "download_latency": self.download_latency,
            "max_concurrent_downloads": self.max_concurrent_downloads,
            "processing_seconds": self.processing_seconds,
            "asset_base_url": self.asset_base_url,
            "api_version": self.api_version,
        }

    def add_fault(self, fault: Fault) -> Fault:
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        now = time.time()
        with self._lock:
            for fault in self.faults.snapshot():
                for image_id in fault.claimed:
                    if image := self.images.get(image_id):
                        image.updated_at = now
            self.faults.clear()

    def reset_stats(self) -> None:
        """Zero every counter; the live concurrency gauge is kept (downloads may be in flight)."""
        with self._lock:
            current = self.stats["concurrent_downloads"]
            self.stats.clear()
            self.stats.update({key: 0 for key in STAT_KEYS})
            self.stats["concurrent_downloads"] = current
            self.stats["peak_concurrent_downloads"] = current
            self.request_log.clear()
            self.assets_served.clear()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def count_asset(self, image_id: str) -> None:
        with self._lock:
            self.assets_served[image_id] += 1

    def try_start_download(self) -> bool:
        """Take a download slot, or count a 429 when max_concurrent_downloads are busy."""
        with self._lock:
            limit = self.max_concurrent_downloads
            if limit is not None and self.stats["concurrent_downloads"] >= limit:
                self.stats["rate_limited"] += 1
                return False
            self.stats["concurrent_downloads"] += 1
            if self.stats["concurrent_downloads"] > self.stats["peak_concurrent_downloads"]:
                self.stats["peak_concurrent_downloads"] = self.stats["concurrent_downloads"]
            return True

    def end_download(self) -> None:
        with self._lock:
            self.stats["concurrent_downloads"] -= 1

    # ---- Autoenhance's webhook (sent by simulator/webhooks.py) -----------------------------

    def set_webhook(self, target: WebhookTarget | None) -> None:
        """Configure (or, with None, remove) the webhook; saving one sends `webhook_updated`, as the real one does."""
        with self._lock:
            self.webhook = target
            self._webhook_queue = [{"event": "webhook_updated"}] if target is not None else []

    def webhook_outbox(self, now: float | None = None) -> list[dict[str, Any]]:
        """Events to send now: queued ones, then `image_processed` for each image whose processing ended."""
        now = time.time() if now is None else now
        with self._lock:
            events, self._webhook_queue = self._webhook_queue, []
            done = []
            for image in self.images.values():
                if image.notify:
                    image.advance(now)
                    if image.status != "processing":
                        image.notify = False
                        done.append(image)
            for image in done:
                order = self.orders.get(image.order_id)
                siblings = [self.images[i] for i in order.image_ids if i in self.images] if order else []
                for sibling in siblings:
                    sibling.advance(now)
                events.append(
                    {
                        "event": "image_processed",
                        "image_id": image.image_id,
                        "error": image.status == "error",
                        "order_id": image.order_id,
                        "order_is_processing": any(s.status == "processing" for s in siblings),
                    }
                )
            return events

    def record_webhook(self, event: dict[str, Any], ok: bool) -> None:
        with self._lock:
            self.webhook_log = [*self.webhook_log[-99:], {**event, "delivered": ok}]

    # ---- seeding -----------------------------------------------------------------------

    def seed_order(
        self, order_id: str | None = None, name: str | None = None, images: list[SeedImage] | tuple[SeedImage, ...] = ()
    ) -> dict[str, Any]:
        """Create (or extend) an order with ready-made images; returns the order JSON."""
        now = time.time()
        with self._lock:
            order = self.orders.get(order_id) if order_id else None
            if order is None:
                order = self._new_order(order_id or str(uuid.uuid4()), name, now)
            elif name is not None:
                order.name = name
            for seed in images:
                self._seed_image(order, seed, now)
            order.updated_at = now
            return self.order_json(order)

    def _seed_image(self, order: OrderRecord, seed: SeedImage, now: float) -> ImageRecord:
        if seed.status not in SEED_STATUSES:
            raise ValueError(f"seed status must be one of {SEED_STATUSES}, not {seed.status!r}")
        if seed.size is not None and seed.size < 0:
            raise ValueError("size must be >= 0")
        image_id = seed.image_id or str(uuid.uuid4())
        if image_id in self.images:
            raise ValueError(f"image {image_id} already exists")
        image = ImageRecord(
            image_id=image_id, order_id=order.order_id, image_name=seed.name, created_at=now, updated_at=now
        )
        if seed.data is not None:
            image.data = seed.data
            image.sniffed_format = imaging.sniff_format(seed.data)
            image.uploaded_content_type = imaging.CONTENT_TYPES.get(image.sniffed_format or "")
        else:
            image.synthetic_size = seed.size if seed.size is not None else DEFAULT_SYNTHETIC_SIZE
        image.status = seed.status
        image.version = 1
        if seed.status == "error":
            image.status_reason = seed.status_reason or SEEDED_ERROR_REASON
        else:
            image.status_reason = seed.status_reason
        self.images[image_id] = image
        order.image_ids.append(image_id)
        return image

    def synthetic_bytes(self, image_id: str) -> bytes:
        """The exact bytes a synthetic image serves."""
        image = self.images.get(image_id)
        if image is None or image.synthetic_size is None:
            raise KeyError(f"{image_id} is not a synthetic image")
        return synthetic.synthetic_bytes(image_id, image.synthetic_size)

    # ---- views ---------------------------------------------------------------------------

    def effective_status(self, image: ImageRecord, now: float | None = None) -> tuple[str, str | None]:
        """The status and reason to show, after the lazy lifecycle and any `error_status` fault."""
        now = time.time() if now is None else now
        with self._lock:
            image.advance(now)
            forced, newly = self.faults.error_for(image.image_id, image.order_id)
            if forced is not None:
                if newly:
                    image.updated_at = now
                return "error", forced
            return image.status, image.status_reason

    def image_json(self, image: ImageRecord, version: ApiVersion = LENIENT) -> dict[str, Any]:
        status, reason = self.effective_status(image)
        return image.to_json(status, reason, version)

    def ordered_images(self, order: OrderRecord, sort: str | None = None) -> list[ImageRecord]:
        """The order's images in `sort`, else in its `default_image_sort_order` (inferred: the list
        follows the order's default when `sort_images_by` is not given)."""
        images = [self.images[i] for i in order.image_ids if i in self.images]  # upload order
        sort = sort or order.default_sort
        if sort in ("name", "-name"):
            images.sort(key=lambda i: (i.image_name or "").casefold(), reverse=sort == "-name")
        elif sort == "-date_added":
            images.reverse()
        elif sort == "custom":
            place = {image_id: n for n, image_id in enumerate(order.custom_order)}
            images.sort(key=lambda i: place.get(i.image_id, len(place)))  # stable: the rest by date added
        return images

    def order_json(
        self, order: OrderRecord, version: ApiVersion = LENIENT, sort: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            images = [self.image_json(image, version) for image in self.ordered_images(order, sort)]
            updated = max([order.updated_at, *(self.images[i].updated_at for i in order.image_ids if i in self.images)])
        statuses = [i["status"] for i in images]
        return {
            "order_id": order.order_id,
            "name": order.name,
            "created_at": iso(order.created_at),
            "last_updated_at": iso(updated),
            "images": images,
            "is_processing": "processing" in statuses,
            "is_merging": order.is_merging,
            "is_deleted": False,
            "status": order_status(statuses),
            "total_images": len(images),
            "default_image_sort_order": order.default_sort,
        }

    # ---- orders --------------------------------------------------------------------------

    def _new_order(self, order_id: str, name: str | None, now: float) -> OrderRecord:
        self._seq += 1
        order = OrderRecord(order_id=order_id, name=name, created_at=now, updated_at=now, seq=self._seq)
        self.orders[order_id] = order
        return order

    def create_order(self, order_id: str | None, name: str | None) -> OrderRecord:
        with self._lock:
            if order_id and order_id in self.orders:
                raise Conflict("Order already exists")
            return self._new_order(order_id or str(uuid.uuid4()), name, time.time())

    def get_order(self, order_id: str) -> OrderRecord:
        order = self.orders.get(order_id)
        if order is None:
            raise NotFound()
        return order

    def rename_order(self, order_id: str, name: str | None) -> OrderRecord:
        with self._lock:
            order = self.get_order(order_id)
            if name is not None:
                order.name = name
            order.updated_at = time.time()
            return order

    def delete_order(self, order_id: str) -> None:
        with self._lock:
            order = self.get_order(order_id)
            for image_id in order.image_ids:
                self.images.pop(image_id, None)
            for bracket_id in order.bracket_ids:
                self.brackets.pop(bracket_id, None)
            del self.orders[order_id]

    def list_orders(
        self,
        per_page: int,
        offset: str | None,
        *,
        q: str | None = None,
        sort: str | None = None,
        version: ApiVersion = LENIENT,
    ) -> dict[str, Any]:
        """`sort` (default -date: newest first); `q` keeps the orders whose name contains it, case
        folded (inferred: the docs say "text search on the name"). The offset token is opaque: the
        place in the sorted, searched list where the next page starts."""
        start = _decode_offset(offset) if offset else 0
        with self._lock:
            ordered = sorted(self.orders.values(), key=lambda o: o.seq, reverse=(sort or "-date") == "-date")
            if sort in ("name", "-name"):
                ordered.sort(key=lambda o: (o.name or "").casefold(), reverse=sort == "-name")
            if q:
                ordered = [o for o in ordered if q.casefold() in (o.name or "").casefold()]
            page = ordered[start : start + per_page]
            orders = [self.order_json(o, version) for o in page]
        next_offset = _encode_offset(start + per_page) if start + per_page < len(ordered) else None
        return {"orders": orders, "pagination": {"next_offset": next_offset, "per_page": per_page}}

    def arrange(self, order_id: str, default_sort: str | None, custom_order: list[str] | None) -> OrderRecord:
        """What a photographer does in the web app: choose the order's default sort, or drag the
        photos into a custom order (ids of this order only)."""
        with self._lock:
            order = self.get_order(order_id)
            if custom_order is not None:
                strangers = [i for i in custom_order if i not in order.image_ids]
                if strangers or len(set(custom_order)) != len(custom_order):
                    raise ValidationFailed("json", {"custom_order": ["Not this order's image ids, or repeated."]})
                order.custom_order = list(custom_order)
            if default_sort is not None:
                order.default_sort = default_sort
            order.updated_at = time.time()
            return order

    # ---- images --------------------------------------------------------------------------

    def get_image(self, image_id: str) -> ImageRecord:
        image = self.images.get(image_id)
        if image is None:
            raise NotFound()
        return image

    def create_image(self, fields: dict[str, Any]) -> ImageRecord:
        now = time.time()
        with self._lock:
            image_id = fields.get("image_id") or str(uuid.uuid4())
            if image_id in self.images:
                raise Conflict("Image already exists")
            order_id = fields.get("order_id") or str(uuid.uuid4())
            order = self.orders.get(order_id) or self._new_order(order_id, None, now)
            image = ImageRecord(
                image_id=image_id, order_id=order_id, image_name=fields["image_name"], created_at=now, updated_at=now
            )
            image.settings = fold_sky(DEFAULT_SETTINGS, _settings(fields))
            image.content_type = fields.get("content_type") or fields.get("contentType")
            self.images[image_id] = image
            order.image_ids.append(image_id)
            order.updated_at = now
            return image

    def upload(self, image_id: str, data: bytes, content_type: str | None) -> ImageRecord:
        """Store uploaded bytes and start processing (unless part of a legacy HDR merge)."""
        now = time.time()
        with self._lock:
            image = self.get_image(image_id)
            image.synthetic_size = None
            image.uploaded_content_type = content_type
            image.sniffed_format = imaging.sniff_format(data)
            image.fail_reason = None if image.sniffed_format else UNSUPPORTED_REASON
            pixels = imaging.pixels(data) if self.max_upload_pixels is not None else None
            if pixels is not None and self.max_upload_pixels is not None and pixels > self.max_upload_pixels:
                image.fail_reason = f"Image has {pixels} pixels, over this service's {self.max_upload_pixels}"
                data = b""  # never decoded, never kept
            image.data = data
            self._keep_upload(image_id, len(data))
            if image.settings.get("hdr"):
                image.status, image.updated_at = "waiting", now
            else:
                image.start_processing(now, self.processing_seconds)
            return image

    def _keep_upload(self, image_id: str, size: int) -> None:
        """Count an upload against `upload_store_bytes`; drop the oldest uploads' bytes past it (the
        newest is always kept: its own size is bounded by max_upload_bytes). Caller holds the lock."""
        self._uploaded.pop(image_id, None)
        self._uploaded[image_id] = size
        if self.upload_store_bytes is None:
            return
        held = sum(self._uploaded.values())
        while held > self.upload_store_bytes and len(self._uploaded) > 1:
            old_id, old_size = self._uploaded.popitem(last=False)
            held -= old_size
            old = self.images.get(old_id)
            if old is not None:
                old.data = None
                old.status, old.status_reason, old.ready_at = "expired", UPLOAD_DROPPED_REASON, None
                old.updated_at = time.time()

    @property
    def uploaded_bytes(self) -> int:
        """Bytes of uploaded photos held now (what `upload_store_bytes` bounds)."""
        with self._lock:
            return sum(self._uploaded.values())

    def reprocess(self, image_id: str, fields: dict[str, Any]) -> ImageRecord:
        now = time.time()
        with self._lock:
            image = self.get_image(image_id)
            image.advance(now)
            image.settings = fold_sky(image.settings, _settings(fields))
            if fields.get("image_name"):
                image.image_name = fields["image_name"]
            if image.data is not None or image.synthetic_size is not None:
                image.start_processing(now, self.processing_seconds)
            image.updated_at = now
            return image

    def premium_edit(self, image_id: str, fields: dict[str, Any]) -> ImageRecord:
        """Day to Dusk on a processed image: a NEW image in the same order, the original untouched.

        Documented: only on an image that finished processing, and it makes a new image. Inferred:
        the path (PUT /v3/images/{id}), the new image's name (`<name> (dusk)`), its place (added last,
        also in a custom arrangement), and the 422 code when the image is not processed yet."""
        now = time.time()
        with self._lock:
            source = self.get_image(image_id)
            environment = (fields.get("restage") or {}).get("environment")
            if environment != "DUSK":
                raise ValidationFailed("json", {"restage": ["A premium edit needs restage.environment DUSK."]})
            status, _ = self.effective_status(source, now)
            if status != "processed":
                raise ApiError(
                    422,
                    "A premium edit needs an image that has finished processing",
                    {"code": "IMAGE_NOT_PROCESSED", "status": status},
                )
            order = self.get_order(source.order_id)
            stem, dot, ext = (source.image_name or "image").rpartition(".")
            name = f"{stem} (dusk).{ext}" if dot and stem else f"{source.image_name or 'image'} (dusk)"
            image = ImageRecord(
                image_id=str(uuid.uuid4()), order_id=order.order_id, image_name=name, created_at=now, updated_at=now
            )
            image.settings = fold_sky(source.settings, {"restage": {"environment": "DUSK"}})
            image.data = source.data
            image.synthetic_size = source.synthetic_size
            image.sniffed_format = source.sniffed_format
            image.uploaded_content_type = source.uploaded_content_type
            image.source_image_id = source.image_id
            image.start_processing(now, self.processing_seconds)
            self.images[image.image_id] = image
            order.image_ids.append(image.image_id)
            if order.custom_order:
                order.custom_order.append(image.image_id)
            order.updated_at = now
            return image

    def delete_image(self, image_id: str) -> None:
        with self._lock:
            image = self.get_image(image_id)
            del self.images[image_id]
            if order := self.orders.get(image.order_id):
                order.image_ids = [i for i in order.image_ids if i != image_id]
                order.updated_at = time.time()

    def report(self, image_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            image = self.get_image(image_id)
            report = {"report_id": str(uuid.uuid4()), "image_id": image_id, **fields}
            image.reports.append(report)
            return report

    def charge(self, image: ImageRecord) -> None:
        """A full-size download costs one credit, the first time per image (as the docs say)."""
        with self._lock:
            if not image.downloaded:
                image.downloaded = True
                image.updated_at = time.time()
                self.stats["credits_spent"] += 1

    # ---- brackets and HDR ------------------------------------------------------------------

    def create_bracket(self, fields: dict[str, Any]) -> BracketRecord:
        now = time.time()
        with self._lock:
            order = self.orders.get(fields["order_id"]) or self._new_order(fields["order_id"], None, now)
            bracket = BracketRecord(
                bracket_id=str(uuid.uuid4()),
                order_id=order.order_id,
                name=fields.get("name"),
                metadata=fields.get("metadata") or {},
            )
            self.brackets[bracket.bracket_id] = bracket
            order.bracket_ids.append(bracket.bracket_id)
            order.updated_at = now
            return bracket

    def upload_bracket(self, bracket_id: str, data: bytes) -> BracketRecord:
        with self._lock:
            bracket = self.brackets.get(bracket_id)
            if bracket is None:
                raise NotFound()
            bracket.data = data
            return bracket

    def process_order(self, order_id: str, fields: dict[str, Any]) -> OrderRecord:
        """Group uploaded brackets into images (explicit groups, N per image, or one each)."""
        now = time.time()
        with self._lock:
            order = self.get_order(order_id)
            uploaded = [b for b in (self.brackets.get(i) for i in order.bracket_ids) if b and b.data is not None]
            groups = _groups(uploaded, fields)
            for group in groups:
                middle = group[len(group) // 2]
                image = ImageRecord(
                    image_id=str(uuid.uuid4()),
                    order_id=order_id,
                    image_name=middle.name,
                    created_at=now,
                    updated_at=now,
                )
                image.settings = fold_sky(DEFAULT_SETTINGS, _settings(fields))
                image.data = middle.data
                image.sniffed_format = imaging.sniff_format(middle.data or b"")
                image.fail_reason = None if image.sniffed_format else UNSUPPORTED_REASON
                image.start_processing(now, self.processing_seconds)
                self.images[image.image_id] = image
                order.image_ids.append(image.image_id)
            order.updated_at = now
            return order

    def merge_order(self, order_id: str, fields: dict[str, Any]) -> OrderRecord:
        """Legacy HDR merge: uploaded `hdr` images are grouped; each group's first image remains."""
        now = time.time()
        with self._lock:
            order = self.get_order(order_id)
            hdr = [
                self.images[i] for i in order.image_ids if self.images[i].settings.get("hdr") and self.images[i].data
            ]
            size = fields.get("number_of_brackets_per_image") or 1
            for start in range(0, len(hdr), size):
                keep, *drop = hdr[start : start + size]
                for image in drop:
                    self.images.pop(image.image_id, None)
                    order.image_ids.remove(image.image_id)
                keep.settings = fold_sky(keep.settings, _settings(fields))
                keep.settings["hdr"] = False
                keep.start_processing(now, self.processing_seconds)
            order.updated_at = now
            return order

    # ---- asset grants ----------------------------------------------------------------------

    def grant(
        self,
        image: ImageRecord,
        kind: Literal["enhanced", "original"],
        spec: imaging.RenderSpec | None,
        content_type: str,
    ) -> str:
        """A fresh random token for an asset URL, valid for asset_ttl_seconds."""
        now = time.time()
        token = secrets.token_urlsafe(24)
        with self._lock:
            if len(self._grants) > 10_000:
                self._grants = {t: g for t, g in self._grants.items() if g.expires_at > now}
            self._grants[token] = AssetGrant(
                image.image_id, image.version, kind, spec, content_type, now + self.asset_ttl_seconds
            )
        return token

    def lookup_grant(self, token: str) -> AssetGrant | None:
        return self._grants.get(token)


def _settings(fields: dict[str, Any]) -> dict[str, Any]:
    """The enhancement preferences present in validated fields (nulls keep the previous value)."""
    return {k: v for k, v in fields.items() if k in DEFAULT_SETTINGS and v is not None}


def _groups(brackets: list[BracketRecord], fields: dict[str, Any]) -> list[list[BracketRecord]]:
    by_id = {b.bracket_id: b for b in brackets}
    explicit = fields.get("images")
    if explicit:
        groups = [[by_id[i] for i in g.get("bracket_ids") or [] if i in by_id] for g in explicit]
        return [g for g in groups if g]
    size = fields.get("number_of_brackets_per_image") or 1
    return [brackets[i : i + size] for i in range(0, len(brackets), size)]


PREMIUM_ON_INITIAL = "PREMIUM_RESTAGE_ON_INITIAL_PROCESSING"


def refuse_premium_restage(fields: dict[str, Any]) -> None:
    """Day to Dusk only on a processed image (PUT): on create or processing it is a 422 with this code
    (documented); where the code sits in the body (`detail.code`) is inferred."""
    if (fields.get("restage") or {}).get("environment") == "DUSK":
        raise ApiError(
            422,
            "restage.environment DUSK is a premium edit of a processed image, not an initial setting",
            {"code": PREMIUM_ON_INITIAL},
        )


def _encode_offset(position: int) -> str:
    return base64.urlsafe_b64encode(f"at:{position}".encode()).decode().rstrip("=")


def _decode_offset(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith("at:") or int(raw[3:]) < 0:
            raise ValueError(raw)
        return int(raw[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed("query", {"offset": ["Invalid offset."]}) from None
