"""JSON answers encoded as the real API's (APIFlask) are: every non-ASCII character as a `\\uXXXX` escape.

Flask's JSON provider keeps `ensure_ascii` on, so text the API stores is sent as escapes, and a
lone UTF-16 surrogate in a stored name (`\\ud83d`, half an emoji) goes out as that escape: valid
JSON that Python decodes into a `str` no UTF-8 encoder accepts. Starlette's own JSONResponse
writes raw UTF-8 and could not send such a name at all, so the simulator could not reproduce it.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON


class JSONResponse(_StarletteJSON):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
