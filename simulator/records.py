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

from simulator.versions import LENIENT, ApiVersion

DEFAULT_SETTINGS: dict[str, Any] = {
    "ai_version": None,  # the default: shown as "latest" where channels exist, else "4.x"
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
    "restage": None,
}
LEGACY_CLOUDS = ("CLEAR", "LOW_CLOUD", "HIGH_CLOUD")
"""The `cloud_type` values of versions before `restage.sky` (the official SDKs validate this enum)."""

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
    source_image_id: str | None = None
    """A premium edit (Day to Dusk) made this image from that one."""

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

    def to_json(self, status: str, reason: str | None, version: ApiVersion = LENIENT) -> dict[str, Any]:
        s = self.settings
        body = {
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
        body["ai_version"] = shown_ai_version(s["ai_version"], version)
        if version.restage_sky:  # from 2026-07-01 the sky lives in restage.sky (inferred: the legacy fields go)
            del body["sky_replacement"], body["cloud_type"]
            body["restage"] = restage_of(s)
        if self.source_image_id is not None:  # a premium edit's result (inferred field name)
            body["source_image_id"] = self.source_image_id
        return body


def shown_ai_version(stored: str | None, version: ApiVersion) -> str:
    """The default is Latest where channels exist; a version without channels sees a numbered value
    (inferred: "5.x" for a channel, the simulator's historical "4.x" for the default)."""
    if version.channels:
        return stored or "latest"
    if stored is None:
        return "4.x"
    return "5.x" if stored in ("latest", "stable", "beta", "5.1", "5.2", "5.3") else stored


def restage_of(settings: dict[str, Any]) -> dict[str, str | None]:
    """Every restage sub-property, AS_SHOT when not chosen."""
    chosen = settings.get("restage") or {}
    names = ("sky", "grass", "fire_in_fireplaces", "tvs", "photographer", "environment")
    return {name: chosen.get(name) or "AS_SHOT" for name in names}


def fold_sky(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The settings after `fields`, with the sky kept in both spellings: `restage.sky` (2026-07-01 on)
    and `sky_replacement` + `cloud_type` (before). The legacy pair is folded into `restage.sky`, as the
    docs say; an explicit `restage.sky` wins over it (inferred)."""
    merged = {**current, **fields}
    restage = {**(current.get("restage") or {}), **(fields.get("restage") or {})}
    if "sky" not in (fields.get("restage") or {}) and ("sky_replacement" in fields or "cloud_type" in fields):
        if merged.get("sky_replacement") is False:
            restage["sky"] = "AS_SHOT"
        elif merged.get("sky_replacement") or merged.get("cloud_type"):
            restage["sky"] = merged.get("cloud_type") or "CLEAR"
    elif "sky" in (fields.get("restage") or {}):
        sky = restage.get("sky") or "AS_SHOT"
        merged["sky_replacement"] = sky != "AS_SHOT"
        merged["cloud_type"] = sky if sky in LEGACY_CLOUDS else None
    merged["restage"] = restage or None
    return merged


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
    default_sort: str = "date_added"
    """`default_image_sort_order`: upload order unless the photographer arranged it (inferred default)."""
    custom_order: list[str] = field(default_factory=list)
    """The photographer's arrangement (image ids) for `custom`; images not in it follow, oldest first."""


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
