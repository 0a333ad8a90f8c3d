"""Where `download` saves the ZIP: `-o` as a file, as a folder, or nothing (the order's name, here).

The file's name is often known only once the order is (its name comes from Autoenhance), so `-o`
is read in two steps: `Destination.parse` checks what can be checked before any request (a
missing parent folder, a file where a folder is meant), and `place(order name)` gives the path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.cli.shown import REPLACEMENT, neutral
from app.core.naming import safe_stem


class DestinationError(Exception):
    """`-o` cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Destination:
    folder: Path
    file: Path | None
    """None: `<order name>.zip` in `folder`."""
    make_folder: bool = False
    """`-o Photos/` names a folder that does not exist yet: it is made when the order is known."""

    @classmethod
    def parse(cls, raw: str | None) -> Destination:
        if raw is None or raw == "":
            return cls(Path("."), None)
        path = Path(raw).expanduser()
        if raw.endswith(("/", os.sep)) or path.is_dir():
            if path.exists() and not path.is_dir():
                raise DestinationError(f"{path} is a file, not a folder; choose another -o")
            return cls(path, None, make_folder=not path.exists())
        if not path.parent.is_dir():
            raise DestinationError(
                f"The folder {path.parent} does not exist; create it, choose another -o, or end -o with / "
                "to have it made"
            )
        return cls(path.parent, path)

    def place(self, order_name: str | None, order_id: str) -> Path:
        """The ZIP's path for this order (the folder made if `-o` asked for a new one)."""
        if self.file is not None:
            return self.file
        if self.make_folder:
            self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{file_stem(order_name, order_id)}.zip"


def file_stem(order_name: str | None, order_id: str) -> str:
    """The order's name as a file name (no path, control, bidi or reserved characters); its id if none."""
    fallback = f"autoenhance-{order_id[:8]}"
    return safe_stem(neutral(order_name or "").replace(REPLACEMENT, ""), fallback) if order_name else fallback
