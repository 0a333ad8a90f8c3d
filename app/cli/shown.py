"""Text from Autoenhance, a service or the command line, made safe to print on a terminal.

Order and image names, failure reasons and a service's error details are data: the terminal library
(rich) reads `[...]` as style tags, so an order named `12 Oak St [/v2]` would crash the command or
lose words, and an ANSI escape or a bidirectional control in a name could repaint or reorder what
the person reads. `shown()` turns any such value into literal text before it meets a markup string.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 and C1 controls: ESC starts an ANSI sequence, CR rewrites the line
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"  # bidirectional marks, embeddings and isolates
)


def neutral(value: object) -> str:
    """`value` as one line with every control character replaced by U+FFFD (shown, never obeyed)."""
    return _CONTROLS.sub(REPLACEMENT, str(value))


_BRACKET = re.compile(r"(\\*)\[")


def shown(value: object) -> str:
    """`value` ready to sit inside a rich markup string: controls neutralised, every `[` escaped.

    Every bracket, not only tag-shaped ones (rich's own `escape`): what is a tag changes between rich
    versions. Backslashes before a bracket are doubled so they stay literal. A value is never placed
    right before a `[` of the template, so a trailing backslash needs nothing.
    """
    return _BRACKET.sub(lambda m: m.group(1) * 2 + "\\[", neutral(value))
