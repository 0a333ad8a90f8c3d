"""Files a batch already downloaded, kept on disk so an interrupted run can be finished, not redone.

The CLI's direct mode writes the ZIP to `<out>.part` and, beside it, a folder `<out>.parts/` with
one file per downloaded image and set. A run cut short (Ctrl-C, a lost connection, a crash) leaves
the folder; the next run with the same order, options and output reads those files instead of
asking Autoenhance again, and fetches only the rest. A finished run deletes the folder.

Why a folder of members rather than a resumable partial ZIP: the engine writes members in
completion order, so the partial archive's tail is whatever was in flight; a folder keyed by
(set, image id) is order-free, each file is complete or absent (written to a temporary name, then
renamed), and each is checked against its recorded size and CRC-32 before it is used again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

from app.core.spool import Spool
from app.core.zip.crc import crc32

READ_CHUNK = 1024 * 1024
STATE_NAME = "batch.json"
NUMBERS_NAME = "numbers.json"
"""`names=sequence` numbers the interrupted run gave, so the rerun names its files alike."""


_OWN_FILE = re.compile(r"[0-9a-f]{32}\.(img|json|tmp)")
"""The names this class gives the files it saves: only these (and STATE_NAME, NUMBERS_NAME) are ever deleted."""


class KeepRefused(Exception):
    """The folder's name is taken by something this class did not make: it is left alone."""


class FolderKeep:
    """A folder of saved files for one order and one set of options (anything else is wiped)."""

    def __init__(self, folder: Path, identity: dict[str, str]) -> None:
        refusal = self.refusal(folder)
        if refusal:
            raise KeepRefused(refusal)
        self.folder = folder
        state = folder / STATE_NAME
        if folder.is_dir():
            try:
                same = json.loads(state.read_text()) == identity
            except (OSError, ValueError):
                same = False
            if not same:  # another order, other options or a newer order version: start clean
                self._clear()
        folder.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(identity))

    @staticmethod
    def refusal(folder: Path) -> str | None:
        """Why `folder` cannot be used (a link, a file, a folder this class did not make), or None."""
        if folder.is_symlink():
            return f"{folder} is a link; this command never writes through one: remove it or choose another -o"
        if folder.exists() and not (folder.is_dir() and (folder / STATE_NAME).is_file()):
            return (
                f"{folder} exists and was not made by this command; it is left alone: move it away or "
                "choose another -o"
            )
        return None

    def _clear(self) -> None:
        """Delete the files this class saved (its state and kept numbers too); anything else in the folder stays."""
        for path in self.folder.iterdir():
            if (_OWN_FILE.fullmatch(path.name) or path.name in (STATE_NAME, NUMBERS_NAME)) and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()

    def _paths(self, key: str) -> tuple[Path, Path]:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]  # image ids come from upstream: never a path
        return self.folder / f"{digest}.img", self.folder / f"{digest}.json"

    def saved(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json") if _.name not in (STATE_NAME, NUMBERS_NAME))

    def numbers(self) -> dict[str, int]:
        """The sequence numbers kept by the interrupted run ({} when none or unreadable)."""
        try:
            data = json.loads((self.folder / NUMBERS_NAME).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}

    def keep_numbers(self, numbers: dict[str, int]) -> None:
        (self.folder / NUMBERS_NAME).write_text(json.dumps(numbers))

    def load(self, key: str, spool: Spool) -> bool:
        data, meta = self._paths(key)
        try:
            expected = json.loads(meta.read_text())
            with data.open("rb") as file:
                while chunk := file.read(READ_CHUNK):
                    spool.write(chunk)
        except (OSError, ValueError):
            spool.reset()
            return False
        if spool.size != expected.get("bytes") or spool.crc32 != expected.get("crc32"):
            spool.reset()  # damaged or half-written: download it again
            return False
        return True

    def save(self, key: str, spool: Spool) -> None:
        data, meta = self._paths(key)
        temporary = data.with_suffix(".tmp")
        crc = 0
        with temporary.open("wb") as file:
            for chunk in spool.chunks():
                file.write(chunk)
                crc = crc32(chunk, crc)
        os.replace(temporary, data)
        meta.write_text(json.dumps({"key": key, "bytes": spool.size, "crc32": crc}))

    def discard(self) -> None:
        """The ZIP is complete: its saved files go, and the folder too unless something else is in it."""
        with contextlib.suppress(OSError):
            self._clear()
            self.folder.rmdir()
