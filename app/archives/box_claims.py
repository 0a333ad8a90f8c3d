"""Single-flight claims shared by the processes of one box, as file locks under DATA_DIR.

Processes that share a data_dir (`python -m app serve --workers N`) share its archive cache too,
so a follower in one process can read what a leader in another wrote. A claim is an exclusive
`flock` on `<directory>/<key>.lock`, holding the leader's tag. The kernel drops the lock when its
process dies, however it dies, so no lease needs renewing and a crashed leader never strands its
followers. The file is deleted by its holder on landing; a claimant checks that the file it
locked is still the one at that path (else it lost a race with a landing and tries again).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("app.single_flight")


class BoxClaims:
    """Claims of this process, by key, as open locked file descriptors."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, tuple[int, str]] = {}  # key -> (fd, value)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.lock"

    def claim(self, key: str, value: str) -> bool:
        """Lead `key` under `value` ("tag|random"), or False while another process leads it.

        A lock file that cannot be made (a full or vanished DATA_DIR) means no coordination: this
        process leads, which is correct, only not deduplicated across the box."""
        try:
            return self._claim(key, value)
        except OSError as exc:
            log.warning("single-flight across processes unavailable", extra={"error": str(exc)})
            return True

    def _claim(self, key: str, value: str) -> bool:
        held = self._held.get(key)
        if held is not None:  # this process leads it already; its caller chose to succeed that claim
            self._held[key] = (held[0], value)
            os.ftruncate(held[0], 0)
            os.pwrite(held[0], value.encode(), 0)
            return True
        path = self._path(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(8):  # a landing between open and lock replaces the file: try the new one
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, value.encode(), 0)
            except OSError:
                os.close(fd)
                raise
            self._held[key] = (fd, value)
            return True
        return False

    def holder(self, key: str) -> str | None:
        """The value of whoever leads `key` on this box now, if anyone."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # none (or no readable one): nobody leads here
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # locked: somebody leads; the value was written before anyone could look
                return os.pread(fd, 4096, 0).decode(errors="replace") or None
            return None  # a file nobody holds: a leader died before landing
        finally:
            os.close(fd)

    def release(self, key: str, value: str) -> None:
        """Land `key` if this process leads it under `value`."""
        held = self._held.get(key)
        if held is None or held[1] != value:
            return
        del self._held[key]
        with contextlib.suppress(OSError):
            self._path(key).unlink()  # while still locked: a claimant that opened it sees a new inode
        os.close(held[0])

    def close(self) -> None:
        for key, (_, value) in list(self._held.items()):
            self.release(key, value)
