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
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_CESU_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def may_hold_surrogates(body: bytes) -> bool:
    """Whether a JSON body can parse to text holding surrogates: a `\\uD800`-`\\uDFFF` escape, or
    the bytes UTF-8 would give a surrogate (CESU-8). Cheap, so most answers are never walked: each
    pattern is looked for only if its first bytes occur (a substring test, far faster than a regex)."""
    return bool(
        (b"\\u" in body and _ESCAPED_SURROGATE.search(body))
        or (b"\xed" in body and _CESU_SURROGATE.search(body))
    )


def valid_text(text: str) -> str:
    """`text` with surrogate pairs joined and lone surrogates replaced by U+FFFD (unchanged if none)."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_json(value: Any, *, what: str = "an answer") -> Any:
    """A parsed JSON value with every string (keys too) made valid, repaired in place (the value is the
    caller's own, fresh from the parser) and without recursion; logs once when anything changed."""
    if isinstance(value, str):
        return valid_text(value)
    repaired = 0
    stack = [value]
    while stack:
        node = stack.pop()
        entries = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, item in entries:
            if isinstance(item, str):
                fixed = valid_text(item)
                if fixed is not item:
                    node[key] = fixed
                    repaired += 1
            elif isinstance(item, dict | list):
                stack.append(item)
            if isinstance(key, str) and (fixed_key := valid_text(key)) is not key:
                node[fixed_key] = node.pop(key)
                repaired += 1
    if repaired:
        log.warning(
            "Autoenhance sent text holding UTF-16 surrogates; pairs joined, lone ones replaced with U+FFFD",
            extra={"what": what, "strings": repaired},
        )
    return value
