"""Name templates: `template=` spells each file's name from fields of its photo, its order and its set.

Why our own small parser and not `str.format`: the template is caller text, and `str.format` on it
would reach attributes and indexes (`{0.__class__}`) and raise on stray braces. Here a template is
parsed once, up front, into literal text and known fields; anything else is a 422 before any call.

Fields (each may take one modifier after a colon):
- `{n}`: the photo's place in the order's sort, zero-padded to the order's width (at least 2 digits,
  as `names=sequence`); `{n:1}`..`{n:6}` asks for at least that many digits instead;
- `{name}`: the original name without its extension (made safe); `{ext}`: the file's extension
  without the dot (`jpg`); `{order}`: the order's name (its id if unnamed); `{set}`: the delivery set;
- `{letter}`: a, b, ... z, aa, ab ... by the photo's place (`{letter:upper}` for A, B ...);
- `:slug` on name, order and set: lower case, runs of other characters as one `-` (`123-main-st`);
  `:upper` and `:lower` change case.
`{{` and `}}` are literal braces. A name without its extension at the end gets it appended, so
`{n} - {name}` gives `01 - front.jpg`: that is what `names=sequence` makes. Every result then passes
the same safety and uniqueness rules as any name (app/core/naming.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from app.errors import InvalidOption

MAX_TEMPLATE = 200
SEQUENCE_TEMPLATE = "{n} - {name}"
FIELDS = ("n", "name", "ext", "order", "set", "letter")
_TEXT_MODIFIERS = {"slug", "upper", "lower"}
_MODIFIERS: dict[str, set[str]] = {
    "n": {str(d) for d in range(1, 7)},
    "name": _TEXT_MODIFIERS,
    "order": _TEXT_MODIFIERS,
    "set": _TEXT_MODIFIERS,
    "ext": {"upper", "lower"},
    "letter": {"upper", "lower"},
}
_FIELD = re.compile(r"([a-z]+)(?::([a-z0-9]+))?")


@dataclass(frozen=True)
class Field:
    name: str
    modifier: str | None


Part = str | Field


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Values:
    """What one file's name may be made of."""

    n: int
    width: int
    name: str
    ext: str
    order: str
    set: str


def parse_template(text: str) -> Template:
    """The template as literal text and fields; 422 (InvalidOption) naming what is wrong."""
    if len(text) > MAX_TEMPLATE:
        raise InvalidOption(f"template is {len(text)} characters; at most {MAX_TEMPLATE}")
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text[i : i + 2] == char * 2:
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise InvalidOption(f"template has a '}}' without its '{{' at character {i + 1}; write '}}}}' for a brace")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            raise InvalidOption(f"template has a '{{' without its '}}' at character {i + 1}; write '{{{{' for a brace")
        inner = text[i + 1 : end]
        match = _FIELD.fullmatch(inner)
        if match is None or match.group(1) not in FIELDS:
            raise InvalidOption(f"template field {{{inner[:40]}}} is unknown: use {', '.join('{' + f + '}' for f in FIELDS)}")
        field, modifier = match.group(1), match.group(2)
        if modifier is not None and modifier not in _MODIFIERS[field]:
            raise InvalidOption(
                f"template field {{{inner[:40]}}}: {field} takes {', '.join(sorted(_MODIFIERS[field]))} after the colon"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Field(field, modifier))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    if not any(isinstance(p, Field) or p.strip() for p in parts):
        raise InvalidOption("template is empty")
    return Template(text, tuple(parts))


def letters(n: int) -> str:
    """1 -> a, 26 -> z, 27 -> aa (spreadsheet columns, lower case)."""
    out = ""
    while n > 0:
        n, rest = divmod(n - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


def slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _text(value: str, modifier: str | None) -> str:
    if modifier == "slug":
        return slug(value)
    if modifier == "upper":
        return value.upper()
    if modifier == "lower":
        return value.lower()
    return value


def render(template: Template, values: Values) -> str:
    """One file's name stem (its extension is appended by the caller unless the template ends with it)."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.name == "n":
            width = int(part.modifier) if part.modifier else values.width
            out.append(f"{values.n:0{width}d}")
        elif part.name == "letter":
            out.append(_text(letters(values.n), part.modifier))
        else:
            out.append(_text(str(getattr(values, part.name)), part.modifier))
    return "".join(out)


def checked_template(text: str | None) -> str | None:
    """A caller's template, parsed now so a bad one is a 422 before any call; None (or blank) for none."""
    if text is None or not text.strip():
        return None
    parse_template(text)
    return text
