"""What the simulator stores per order, image and bracket, and how each is shown as v3 JSON.

Field choices follow the official SDKs' strict models (see the reference doc, section 6):
`date_added` is int epoch-ms, `ai_version`/`enhance_type`/`cloud_type` come from their enums,
`metadata` is a dict, booleans are real booleans. Legacy `enhanced`/`error` booleans are kept
because current integrations still read them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_SETTINGS: dict[str, Any] = {
    "ai_version": "4.x",
    "enhance": True,
    "enhance_type": "warm",
    "cloud_type": None,
    "sky_replacement": False,
    "vertical_correction": True,
    "lens_correction": True,
    "window_pull": None,
    "privacy": None,
    "upscale": False,
    "threesixty": False,
    "hdr": False,
    "rating": None,
    "metadata": {},
    "finetune_settings": None,
}

SIM_USER_ID = "simulator|user"

_SCENES = ("kitchen", "bathroom", "bedroom", "living", "dining", "garden", "patio", "exterior", "pool", "office")


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and Z, like the real API (2025-07-05T02:27:21.305Z)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def guess_scene(name: str | None) -> str | None:
    lowered = (name or "").lower()
    return next((scene for scene in _SCENES if scene in lowered), None)


def image_type_for(name: str | None, sniffed: str | None) -> str:
    if sniffed:
        return sniffed
    match = re.search(r"\.([A-Za-z0-9]+)$", name or "")
    ext = match.group(1).lower() if match else "jpeg"
    return "jpeg" if ext == "jpg" else ext


@dataclass(frozen=True)
class WebhookTarget:
    """Where the simulated Autoenhance webhook goes, and the authentication value it sends."""

    url: str
    token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "token_set": self.token is not None}


@dataclass
class ImageRecord:
    """One image. `status` is the stored lifecycle state; faults may overlay it when shown."""

    image_id: str
    order_id: str
    image_name: str | None
    created_at: float
    updated_at: float
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    status: str = "waiting"
    status_reason: str | None = None
    ready_at: float | None = None
    fail_reason: str | None = None
    data: bytes | None = None
    synthetic_size: int | None = None
    content_type: str | None = None
    uploaded_content_type: str | None = None
    sniffed_format: str | None = None
    downloaded: bool = False
    version: int = 0
    upload_token: str = field(default_factory=lambda: secrets.token_hex(16))
    reports: list[dict[str, Any]] = field(default_factory=list)
    notify: bool = False
    """Processing started and its `image_processed` webhook event is not sent yet."""

    def advance(self, now: float) -> None:
        """Finish processing once its time has come (lazy, so the lifecycle is deterministic)."""
        if self.status == "processing" and self.ready_at is not None and now >= self.ready_at:
            self.status = "error" if self.fail_reason else "processed"
            self.status_reason = self.fail_reason
            self.updated_at = self.ready_at
            self.ready_at = None

    def start_processing(self, now: float, seconds: float) -> None:
        self.status = "processing"
        self.status_reason = None
        self.ready_at = now + seconds
        self.version += 1
        self.updated_at = now
        self.notify = True

    def to_json(self, status: str, reason: str | None) -> dict[str, Any]:
        s = self.settings
        return {
            "image_id": self.image_id,
            "image_name": self.image_name,
            "order_id": self.order_id,
            "user_id": SIM_USER_ID,
            "date_added": int(self.created_at * 1000),
            "status": status,
            "status_reason": reason,
            "enhanced": status == "processed",
            "error": status == "error",
            "downloaded": self.downloaded,
            "ai_version": s["ai_version"],
            "enhance": s["enhance"],
            "enhance_type": s["enhance_type"],
            "cloud_type": s["cloud_type"],
            "sky_replacement": s["sky_replacement"],
            "vertical_correction": s["vertical_correction"],
            "lens_correction": s["lens_correction"],
            "window_pull": s["window_pull"],
            "privacy": s["privacy"],
            "upscale": s["upscale"],
            "rating": s["rating"],
            "scene": guess_scene(self.image_name),
            "metadata": dict(s["metadata"] or {}),
            "finetune_settings": s["finetune_settings"],
            "image_type": image_type_for(self.image_name, self.sniffed_format),
            "is_threesixty": bool(s["threesixty"]),
        }


@dataclass
class BracketRecord:
    bracket_id: str
    order_id: str
    name: str | None
    metadata: dict[str, Any]
    upload_token: str = field(default_factory=lambda: secrets.token_hex(16))
    data: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "bracket_id": self.bracket_id,
            "name": self.name,
            "order_id": self.order_id,
            "is_uploaded": self.data is not None,
            "metadata": dict(self.metadata),
        }


@dataclass
class OrderRecord:
    order_id: str
    name: str | None
    created_at: float
    updated_at: float
    seq: int
    image_ids: list[str] = field(default_factory=list)
    bracket_ids: list[str] = field(default_factory=list)
    is_merging: bool = False


def order_status(statuses: list[str]) -> str:
    """waiting with no images; processing while any image is; error when all failed; else processed."""
    if not statuses:
        return "waiting"
    if "processing" in statuses:
        return "processing"
    if "waiting" in statuses:
        return "waiting"
    if all(s == "error" for s in statuses):
        return "error"
    return "processed"
