"""Text from Autoenhance made valid Unicode where it is parsed, before it can reach a file name or a header.

JSON may spell a UTF-16 surrogate on its own (`"\\ud83d room 1.jpg"`: half an emoji, as a client
that cuts a string by UTF-16 units leaves it), and Python's `json` hands such a lone surrogate
over as is. A `str` holding one cannot be encoded as UTF-8: the ZIP member name, Content-Disposition,
the layout record, the report, a JSON answer and the terminal would each fail on it, far from
where it came in. So every string of an upstream JSON answer is repaired once, here:

- a high and a low surrogate side by side (CESU-8 bytes decoded with `surrogatepass`) are joined
  into the one character they spell, so nothing a client meant is lost;
- a surrogate left alone becomes U+FFFD (the replacement character): the name keeps its length
  and shows where something was missing, where dropping it would silently change the name.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("app.text")

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_RAW_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
"""In a JSON body: a `\\uD800`-`\\uDFFF` escape, or the bytes UTF-8 would give a surrogate (CESU-8)."""


def may_hold_surrogates(body: bytes) -> bool:
    """Whether a JSON body can parse to text holding surrogates (cheap: most answers are not walked)."""
    return _RAW_SURROGATE.search(body) is not None


def valid_text(text: str) -> str:
    """`text` with surrogate pairs joined and lone surrogates replaced by U+FFFD (unchanged if none)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_json(value: Any, *, what: str = "an answer") -> Any:
    """A parsed JSON value with every string (keys too) made valid; logs once when anything changed."""
    repaired = [0]
    result = _repair(value, repaired)
    if repaired[0]:
        log.warning(
            "Autoenhance sent text holding UTF-16 surrogates; pairs joined, lone ones replaced with U+FFFD",
            extra={"what": what, "strings": repaired[0]},
        )
    return result


def _repair(value: Any, repaired: list[int]) -> Any:
    if isinstance(value, str):
        fixed = valid_text(value)
        repaired[0] += fixed is not value
        return fixed
    if isinstance(value, list):
        return [_repair(item, repaired) for item in value]
    if isinstance(value, dict):
        return {_repair(key, repaired): _repair(item, repaired) for key, item in value.items()}
    return value
