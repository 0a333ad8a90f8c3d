"""Autoenhance Batch: one streamed ZIP for a whole Autoenhance order.

Importing the package loads nothing heavy: `app.app` (the ASGI application `python -m app serve` runs)
and `create_app` come
from `app.main` on first access, so the command-line tool can import `app.cli` without FastAPI.
"""

from __future__ import annotations

from typing import Any

from app.version import __version__

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name in ("app", "create_app"):
        from app import main

        return getattr(main, name)
    raise AttributeError(name)
