"""A disk cache of complete archives, filled by the first streamed response as it goes.

Keyed by order id, options and the order's `last_updated_at`, so a reprocessed order misses. Only
archives where nothing failed are kept: a partial result must never be served again, or a retry
would not really retry. Bounded by CACHE_MAX_BYTES (least recently used out) and CACHE_TTL_SECONDS.
Each entry is `<key>.zip` plus `<key>.json` (its headers); the `.json`'s mtime is the entry's last
use, so the `.zip` is never touched after it is published and its validators stay put.

The cache is optional, the download is not: a write that fails (a full DATA_DIR above all) drops
that entry, pauses caching for DISK_PAUSE_SECONDS with one clear log line, and the stream goes on.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.core import owner
from app.core.models import BatchOptions
from app.core.zip.format import Piece

log = logging.getLogger("app.cache")

DISK_PAUSE_SECONDS = 60.0
"""After a failed cache write, no new entry is attempted for this long (the disk will not be emptier sooner)."""


@dataclass(frozen=True)
class CachedArchive:
    path: Path
    size: int
    meta: dict[str, Any]


class CacheWriter:
    """Receives an archive's bytes while they stream; `commit()` publishes it atomically."""

    def __init__(self, cache: ArchiveCache, key: str, meta: dict[str, Any]) -> None:
        self._cache = cache
        self._key = key
        self._meta = meta
        self._tmp = cache.directory / f"{key}.{os.getpid()}.{id(self)}.tmp"
        self._file: IO[bytes] | None = None  # opened on the first chunk: a stream that never starts leaves nothing
        self._dropped = False
        self.size = 0

    def write(self, chunk: Piece) -> None:
        if self._dropped:
            return
        self.size += len(chunk)
        if self.size > self._cache.max_bytes:
            self.discard()  # larger than the whole cache: not worth keeping
            return
        try:
            if self._file is None:
                self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/discard
            self._file.write(chunk)
        except OSError as exc:
            self._cache.write_failed(exc)
            self.discard()

    def commit(self, meta: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
            self._file = None
            meta_path = self._cache.directory / f"{self._key}.json"
            meta_path.write_text(json.dumps(self._meta | meta))
            os.replace(self._tmp, self._cache.directory / f"{self._key}.zip")
        except OSError as exc:
            self._cache.write_failed(exc)
            self.discard()
            self._cache._remove(self._key)
            return
        log.info("archive cached", extra={"key": self._key, "bytes": self.size})
        self._cache.evict()

    def discard(self) -> None:
        self._dropped = True
        if self._file is not None:
            with contextlib.suppress(OSError):  # closing flushes: on a full disk that fails too
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class ArchiveCache:
    def __init__(self, directory: Path, max_bytes: int, ttl_seconds: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.hits = 0
        self.misses = 0
        self.paused_until = 0.0  # time.monotonic() before which no entry is written (a write failed)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):  # `<key>.<pid>.<n>.tmp`: a dead process's half-written entry
            pid = stale.name.split(".")[1]
            if not (pid.isdigit() and int(pid) != os.getpid() and owner.alive(int(pid))):
                stale.unlink(missing_ok=True)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.ttl_seconds > 0

    @staticmethod
    def key(order_id: str, options: BatchOptions, last_updated_at: str | None) -> str:
        raw = f"{order_id}|{options.key()}|{last_updated_at or '-'}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def lookup(self, key: str) -> CachedArchive | None:
        if not self.enabled:
            return None
        path = self.directory / f"{key}.zip"
        try:
            stat = path.stat()
            meta = json.loads((self.directory / f"{key}.json").read_text())
        except (FileNotFoundError, ValueError):
            self.misses += 1
            return None
        if time.time() - meta.get("created_at", 0) > self.ttl_seconds:
            self._remove(key)
            self.misses += 1
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.directory / f"{key}.json")  # mark as recently used (not the .zip: see above)
        self.hits += 1
        return CachedArchive(path, stat.st_size, meta)

    def peek(self, key: str) -> dict[str, Any] | None:
        """An entry's metadata, if present and fresh, without counting a hit or marking it used."""
        if not self.enabled:
            return None
        try:
            meta: dict[str, Any] = json.loads((self.directory / f"{key}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not (self.directory / f"{key}.zip").is_file() or time.time() - meta.get("created_at", 0) > self.ttl_seconds:
            return None
        return meta

    def writer(self, key: str, meta: dict[str, Any]) -> CacheWriter | None:
        if not self.enabled or time.monotonic() < self.paused_until:
            return None
        return CacheWriter(self, key, meta | {"created_at": time.time()})

    def write_failed(self, exc: OSError) -> None:
        """A cache write failed: say so plainly, once per pause, and stop trying for a while."""
        first = time.monotonic() >= self.paused_until
        self.paused_until = time.monotonic() + DISK_PAUSE_SECONDS
        if first:
            what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"write failed ({exc.strerror})"
            log.error(
                "archive cache: %s in %s; caching paused for %g s, archives are still streamed to callers",
                what, self.directory, DISK_PAUSE_SECONDS,
            )

    def evict(self) -> None:
        """Drop expired entries, then least recently used ones until under the byte budget."""
        entries = []
        now = time.time()
        for path in self.directory.glob("*.zip"):
            try:
                stat = path.stat()
                used = (self.directory / f"{path.stem}.json").stat().st_mtime
            except FileNotFoundError:
                used = 0.0
                if not path.exists():
                    continue
            if now - used > self.ttl_seconds and self._expired(path.stem, now):
                self._remove(path.stem)
                continue
            entries.append((used, stat.st_size, path.stem))
        total = sum(size for _, size, _ in entries)
        for _, size, key in sorted(entries):
            if total <= self.max_bytes:
                break
            self._remove(key)
            total -= size

    def _expired(self, key: str, now: float) -> bool:
        try:
            meta = json.loads((self.directory / f"{key}.json").read_text())
        except (FileNotFoundError, ValueError):
            return True
        return bool(now - meta.get("created_at", 0) > self.ttl_seconds)

    def _remove(self, key: str) -> None:
        for suffix in (".zip", ".json"):
            (self.directory / f"{key}{suffix}").unlink(missing_ok=True)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.zip") if p.exists())
