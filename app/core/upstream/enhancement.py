"""The enhancement settings a photographer picks for an upload, as Autoenhance's create-image takes them.

Values are Autoenhance's own (its 2026 documentation): the enhance type, the `restage` choices
(sky, grass, fire in fireplaces, TVs, photographer removal), vertical correction and privacy
(faces and plates blurred). Day to Dusk (`restage.environment`) is not offered: Autoenhance refuses
it on a new image (422 PREMIUM_RESTAGE_ON_INITIAL_PROCESSING); it is a later edit of a processed one.
Unset choices are left out, so Autoenhance's defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EnhanceType(StrEnum):
    """`property`/`property_usa` for AI 3, `warm`/`neutral` for AI 4 and later, `modern` (SDK 1.1.0)."""

    warm = "warm"
    neutral = "neutral"
    modern = "modern"
    property = "property"
    property_usa = "property_usa"


class Sky(StrEnum):
    AS_SHOT = "AS_SHOT"
    CLEAR = "CLEAR"
    LOW_CLOUD = "LOW_CLOUD"
    LOW_CLOUD_LOW_SAT = "LOW_CLOUD_LOW_SAT"
    HIGH_CLOUD = "HIGH_CLOUD"
    WHISPY_CLOUD = "WHISPY_CLOUD"
    DUSK_CLOUD = "DUSK_CLOUD"


class Grass(StrEnum):
    AS_SHOT = "AS_SHOT"
    GREEN = "GREEN"


class Fire(StrEnum):
    AS_SHOT = "AS_SHOT"
    ALIGHT = "ALIGHT"


class Tvs(StrEnum):
    AS_SHOT = "AS_SHOT"
    BLACK_OUT = "BLACK_OUT"


class Photographer(StrEnum):
    AS_SHOT = "AS_SHOT"
    REMOVE = "REMOVE"


@dataclass(frozen=True)
class EnhancementSettings:
    enhance_type: EnhanceType | None = None
    sky: Sky | None = None
    grass: Grass | None = None
    fire_in_fireplaces: Fire | None = None
    tvs: Tvs | None = None
    photographer: Photographer | None = None
    vertical_correction: bool | None = None
    privacy: bool | None = None

    def body(self) -> dict[str, Any]:
        """The create-image fields for these choices (only those made)."""
        body: dict[str, Any] = {}
        if self.enhance_type is not None:
            body["enhance_type"] = self.enhance_type.value
        restage = {
            name: value.value
            for name, value in (
                ("sky", self.sky),
                ("grass", self.grass),
                ("fire_in_fireplaces", self.fire_in_fireplaces),
                ("tvs", self.tvs),
                ("photographer", self.photographer),
            )
            if value is not None
        }
        if restage:
            body["restage"] = restage
        if self.vertical_correction is not None:
            body["vertical_correction"] = self.vertical_correction
        if self.privacy is not None:
            body["privacy"] = self.privacy
        return body

    def as_dict(self) -> dict[str, Any]:
        return self.body()
