"""DELIVERY_SETS: the delivery sets an operator adds, read from a TOML or JSON file at start.

Why a file and not code: listing boards differ (one caps photos at 1280x960 and 125 KB, another
wants 1024x768, another 1920 px; most forbid branding) and change their rules; an operator adds a
board's preset without a release. The file holds a list of sets under `sets`:

    [[sets]]
    name = "board"
    description = "1280x960, under 125 KB, unbranded"
    max_width = 1280
    max_height = 960
    quality = 85
    max_bytes = 125000

Each entry is checked here (a wrong file stops the service at start with the entry and field named,
rather than a board getting wrong photos later). Built-in set names cannot be redefined.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.models import ImageFormat, SetDefinition

BUILT_IN = ("full", "mls", "web", "print", "original")
MAX_SETS = 50


class SetFileError(ValueError):
    """DELIVERY_SETS cannot be used: the message says which entry and field, and why."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    description: str = Field(default="", max_length=200)
    format: ImageFormat = ImageFormat.jpeg
    quality: int | None = Field(default=None, ge=1, le=90)
    max_width: int | None = Field(default=None, ge=1, le=20000)
    max_height: int | None = Field(default=None, ge=1, le=20000)
    dpi: int | None = Field(default=None, ge=72, le=2400)
    watermark: bool = False
    max_bytes: int | None = Field(default=None, ge=1024)
    preview: bool = False


def load_sets(path: Path) -> dict[str, SetDefinition]:
    """The operator's sets by name, in file order; SetFileError if the file is unreadable or wrong."""
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise SetFileError(f"DELIVERY_SETS {path}: cannot read it ({exc})") from exc
    entries = raw.get("sets") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SetFileError(f"DELIVERY_SETS {path}: expected a non-empty list under 'sets'")
    if len(entries) > MAX_SETS:
        raise SetFileError(f"DELIVERY_SETS {path}: {len(entries)} sets; at most {MAX_SETS}")
    sets: dict[str, SetDefinition] = {}
    for index, entry in enumerate(entries, start=1):
        try:
            checked = _Entry.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise SetFileError(f"DELIVERY_SETS {path}: set #{index}: {problems}") from None
        if checked.name in BUILT_IN or checked.name in sets:
            raise SetFileError(f"DELIVERY_SETS {path}: set #{index}: the name {checked.name!r} is already taken")
        sets[checked.name] = SetDefinition(**checked.model_dump())
    return sets
