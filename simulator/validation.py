"""Request parsing with marshmallow-style messages, so bad input fails like the real API (422).

Bodies are validated in location "json", query strings in "query". Unknown fields are ignored
(the real ImageIn allows additional properties); explicit nulls are accepted where the official
SDK sends them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.errors import ValidationFailed

AI_VERSIONS = (
    "dev",
    "5.x",
    "5.0",
    "4.x",
    "4.7",
    "4.5",
    "4.4",
    "4.3",
    "4.2",
    "4.1",
    "4.0",
    "3.x",
    "3.5",
    "3.4",
    "3.3",
    "3.2",
    "3.1",
    "3.0",
)
AI_CHANNELS = ("latest", "stable", "beta", "5.3", "5.2", "5.1")
"""From January 2026: the channels, and the numbered versions up to 5.3 that Stable aliases."""
RESTAGE = {
    "sky": ("AS_SHOT", "CLEAR", "LOW_CLOUD", "LOW_CLOUD_LOW_SAT", "HIGH_CLOUD", "WHISPY_CLOUD", "DUSK_CLOUD"),
    "grass": ("AS_SHOT", "GREEN"),
    "fire_in_fireplaces": ("AS_SHOT", "ALIGHT"),
    "tvs": ("AS_SHOT", "BLACK_OUT"),
    "photographer": ("AS_SHOT", "REMOVE"),
    "environment": ("AS_SHOT", "DUSK"),
}
"""`restage` sub-properties and their values (each also null); `environment` is the premium Day to Dusk."""
IMAGE_SORTS = ("name", "-name", "date_added", "-date_added", "custom")
ORDER_SORTS = ("name", "-name", "date", "-date")
ENHANCE_TYPES = ("property", "property_usa", "warm", "neutral", "modern")
CLOUD_TYPES = ("CLEAR", "LOW_CLOUD", "HIGH_CLOUD")
WINDOW_PULL_TYPES = ("NONE", "ONLY_WINDOWS", "WINDOWS_WITH_SKIES")
FORMATS = ("png", "jpeg", "webp", "avif", "jxl")
SIZES = ("small", "large", "big")
REPORT_CATEGORIES = (
    "AUTO_PRIVACY",
    "COLOUR",
    "CONTRAST",
    "DOWNLOAD",
    "DYNAMIC_RANGE",
    "EXPOSURE",
    "HDR",
    "IMAGE_QUALITY",
    "ITEM_REMOVAL",
    "LENS_CORRECTION",
    "NO_COMPLAINTS",
    "NOISE",
    "OTHER",
    "PERSPECTIVE_CORRECTION",
    "PROCESSING",
    "SHARPNESS",
    "SKY_REPLACEMENT",
    "WHITE_BALANCE",
    "WINDOW_PULL",
    "PRIVACY",
)
REPORT_SOURCES = ("WEBAPP", "API")

_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


class FieldError(ValueError):
    """One field's message."""


Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Field:
    parse: Parser
    required: bool = False
    nullable: bool = True


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError("Not a valid string.")
    return value


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
    raise FieldError("Not a valid boolean.")


def integer(low: int | None = None, high: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise FieldError("Not a valid integer.")
        try:
            number = int(value) if isinstance(value, str | int) else None
        except ValueError:
            number = None
        if number is None:
            raise FieldError("Not a valid integer.")
        _check_range(number, low, high)
        return number

    return parse


def number(low: float | None = None, high: float | None = None) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise FieldError("Not a valid number.")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise FieldError("Not a valid number.") from None
        if result != result:  # NaN
            raise FieldError("Not a valid number.")
        _check_range(result, low, high)
        return result

    return parse


def _check_range(value: float, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise FieldError(f"Must be between {low} and {high}.")
    if low is not None and value < low:
        raise FieldError(f"Must be greater than or equal to {low}.")
    if high is not None and value > high:
        raise FieldError(f"Must be less than or equal to {high}.")


def one_of(choices: tuple[str, ...], *, fold: Callable[[str], str] | None = None) -> Parser:
    def parse(value: Any) -> str:
        text = string(value)
        text = fold(text) if fold else text
        if text not in choices:
            raise FieldError(f"Must be one of: {', '.join(choices)}.")
        return text

    return parse


def mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError("Not a valid mapping type.")
    return value


def list_of(item: Parser) -> Parser:
    def parse(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise FieldError("Not a valid list.")
        return [item(v) for v in value]

    return parse


def restage(value: Any) -> dict[str, str | None]:
    """A `restage` object: known sub-properties only, each one of its values (upper-cased) or null."""
    data = mapping(value)
    out: dict[str, str | None] = {}
    for name, raw in data.items():
        choices = RESTAGE.get(name)
        if choices is None:
            raise FieldError(f"Unknown field: {name}.")
        if raw is None:
            out[name] = None
            continue
        text = raw.upper() if isinstance(raw, str) else raw
        if text not in choices:
            raise FieldError(f"{name}: must be one of: {', '.join(choices)}.")
        out[name] = text
    return out


def parse_fields(location: str, data: Mapping[str, Any], schema: Mapping[str, Field]) -> dict[str, Any]:
    """Validate `data` against `schema`; only fields present in data (or required) are returned."""
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in data:
            if spec.required:
                errors[name] = ["Missing data for required field."]
            continue
        value = data[name]
        if value is None:
            if spec.nullable and not spec.required:
                out[name] = None
            else:
                errors[name] = ["Field may not be null."]
            continue
        try:
            out[name] = spec.parse(value)
        except FieldError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise ValidationFailed(location, errors)
    return out


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is {}."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationFailed("json", {"_schema": ["Invalid input type."]}) from None
    if not isinstance(data, dict):
        raise ValidationFailed("json", {"_schema": ["Invalid input type."]})
    return data


IMAGE_SETTINGS: dict[str, Field] = {
    "ai_version": Field(one_of(AI_VERSIONS)),
    "enhance": Field(boolean),
    "enhance_type": Field(one_of(ENHANCE_TYPES, fold=str.lower)),
    "cloud_type": Field(one_of(CLOUD_TYPES, fold=str.upper)),
    "sky_replacement": Field(boolean),
    "vertical_correction": Field(boolean),
    "lens_correction": Field(boolean),
    "window_pull": Field(boolean),
    "window_pull_type": Field(one_of(WINDOW_PULL_TYPES, fold=str.upper)),
    "privacy": Field(boolean),
    "upscale": Field(boolean),
    "threesixty": Field(boolean),
    "hdr": Field(boolean),
    "rating": Field(integer(0, 5)),
    "metadata": Field(mapping),
    "finetune_settings": Field(mapping),
    "restage": Field(restage),
}

IMAGE_IN: dict[str, Field] = {
    "image_name": Field(string, required=True),
    "order_id": Field(string),
    "image_id": Field(string),
    "content_type": Field(string),
    "contentType": Field(string),
    **IMAGE_SETTINGS,
}

IMAGE_IN_UPDATE: dict[str, Field] = {"image_name": Field(string), **IMAGE_SETTINGS}

ORDER_IN: dict[str, Field] = {"name": Field(string), "order_id": Field(string)}

REPORT_IN: dict[str, Field] = {
    "categories": Field(list_of(one_of(REPORT_CATEGORIES, fold=str.upper)), required=True),
    "comment": Field(string),
    "score": Field(integer(0, 5)),
    "source": Field(one_of(REPORT_SOURCES, fold=str.upper)),
}

BRACKET_IN: dict[str, Field] = {
    "order_id": Field(string, required=True),
    "name": Field(string),
    "metadata": Field(mapping),
}

ORDER_PROCESS_IN: dict[str, Field] = {
    **IMAGE_SETTINGS,
    "number_of_brackets_per_image": Field(integer(0, 99)),
    "images": Field(list_of(mapping)),
}

DOWNLOAD_QUERY: dict[str, Field] = {
    "quality": Field(integer(1, 90)),
    "format": Field(one_of(FORMATS, fold=str.lower)),
    "preview": Field(boolean),
    "watermark": Field(boolean),
    "finetune": Field(boolean),
    "max_width": Field(integer(1)),
    "scale": Field(number(0, 1)),
    "size": Field(one_of(SIZES, fold=str.lower)),
    "dpi": Field(integer(72)),
}

LIST_QUERY: dict[str, Field] = {
    "per_page": Field(integer(1, 15)),
    "offset": Field(string),
    "q": Field(string),
    "sort": Field(one_of(ORDER_SORTS)),
}
ORDER_QUERY: dict[str, Field] = {"sort_images_by": Field(one_of(IMAGE_SORTS))}


def with_channels(schema: dict[str, Field], channels: bool) -> dict[str, Field]:
    """`schema` with the `ai_version` values the served API version accepts."""
    if not channels or "ai_version" not in schema:
        return schema
    return {**schema, "ai_version": Field(one_of(AI_CHANNELS + AI_VERSIONS))}
