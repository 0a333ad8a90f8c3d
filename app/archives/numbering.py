"""The sequence numbers an order's archives gave (`names=sequence`), kept so they never shift.

A photographer who sent `03 - kitchen.jpg` to a listing site expects the next download to call the
kitchen 03 again, even when a photo was added since (a Day-to-Dusk result sorts among the others
by name, or lands anywhere in a custom arrangement). So the numbers given are kept per order and
photo order (`sort`), in `<DATA_DIR>/numbering/` or, with REDIS_URL, in Redis for every instance;
a new photo takes the next free number (app/core/models.py `assign_numbers`). They are kept for
NUMBERING_TTL_SECONDS after the order's last archive, longer than any cache or layout, and
renewed by each archive. Losing them (another disk, the time passed) numbers the order afresh,
as before they were kept; it never fails a download.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core.models import BatchOptions, NameStyle, OrderInfo, assign_numbers
from app.core.redis_client import connect

log = logging.getLogger("app.numbering")

NUMBERING_TTL_SECONDS = 90 * 86400
"""A listing lives for weeks to months; the record is a few bytes per photo."""


class Numbering:
    """Kept sequence numbers, on disk or in Redis."""

    def __init__(self, directory: Path, redis: aioredis.Redis | None = None, prefix: str = "") -> None:
        self.directory = directory
        self._redis = redis
        self._prefix = prefix

    @classmethod
    def for_settings(cls, data_dir: Path, redis_url: str | None, prefix: str) -> Numbering:
        redis = connect(redis_url) if redis_url else None
        return cls(data_dir / "numbering", redis, prefix)

    async def apply(self, order: OrderInfo, options: BatchOptions) -> OrderInfo:
        """`order` with the numbers its `names=sequence` archive must use (untouched for other names)."""
        if options.names is not NameStyle.sequence or not order.images:
            return order
        name = hashlib.sha256(f"{order.order_id}|{order.sort or '-'}".encode()).hexdigest()[:32]
        kept = await self._load(name)
        numbers = assign_numbers(order.images, kept)
        await self._save(name, numbers)  # renewed even when unchanged: the TTL runs from the last archive
        return replace(order, numbers=numbers)

    async def _load(self, name: str) -> dict[str, int]:
        try:
            if self._redis is not None:
                raw = await self._redis.get(f"{self._prefix}numbering:{name}")
            else:
                path = self.directory / f"{name}.json"
                raw = (
                    path.read_text()
                    if path.exists() and time.time() - path.stat().st_mtime < NUMBERING_TTL_SECONDS
                    else None
                )
            data = json.loads(raw) if raw else {}
        except (RedisError, OSError, ValueError) as exc:
            log.warning("kept sequence numbers unreadable; numbering afresh", extra={"error": str(exc)})
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}

    async def _save(self, name: str, numbers: dict[str, int]) -> None:
        raw = json.dumps(numbers, separators=(",", ":"))
        try:
            if self._redis is not None:
                await self._redis.set(f"{self._prefix}numbering:{name}", raw, ex=NUMBERING_TTL_SECONDS)
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".numbering-")
            try:
                with os.fdopen(fd, "w") as file:
                    file.write(raw)
                os.replace(temp, self.directory / f"{name}.json")  # whole or not at all
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        except (RedisError, OSError) as exc:
            log.warning("sequence numbers not kept", extra={"error": str(exc)})

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
