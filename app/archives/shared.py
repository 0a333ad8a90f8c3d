"""The archive cache shared by every instance: index in Redis, bytes in S3 (REDIS_URL and S3_BUCKET).

Each instance keeps its local disk cache (app/archives/cache.py) as the fast path. When an instance commits
an archive there, it also uploads it to `<S3_PREFIX>cache/<key>.zip` and records the entry's
metadata under `<REDIS_KEY_PREFIX>cache:<key>` with the cache TTL, so another instance that misses
locally can serve it (streamed from S3) instead of fetching the order's images again. The key is the
local cache's key (order, options, order version), so a reprocessed order still misses, and only
archives with no failures are ever committed, as locally.

Entries expire with CACHE_TTL_SECONDS (Redis TTL; the S3 objects are overwritten by the next
publication of the same key, and a bucket lifecycle rule should delete `cache/` objects after the
TTL: see docs/operations.md, "Running at scale").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import obstore
import redis.asyncio as aioredis
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store
from redis.exceptions import RedisError

log = logging.getLogger("app.shared_cache")

CHUNK_BYTES = 1024 * 1024


class SharedCache:
    def __init__(self, redis: aioredis.Redis, store: S3Store, redis_prefix: str, s3_prefix: str, ttl: int) -> None:
        self._redis = redis
        self._store = store
        self._index = f"{redis_prefix}cache:"
        self._objects = f"{s3_prefix}cache/"
        self.ttl = ttl

    def object_key(self, key: str) -> str:
        return f"{self._objects}{key}.zip"

    async def publish(self, key: str, path: Path, meta: dict[str, Any]) -> bool:
        """Upload a committed local entry and index it; False (logged) if that failed."""
        if self.ttl <= 0:
            return False
        try:
            size = await asyncio.to_thread(os.path.getsize, path)
            await obstore.put_async(self._store, self.object_key(key), path)
            await self._redis.set(self._index + key, json.dumps(meta | {"size": size}), ex=self.ttl)
        except (OSError, RedisError, BaseError) as exc:  # sharing is an optimisation: never fail the request
            log.warning("could not share a cached archive", extra={"key": key, "error": str(exc)})
            return False
        log.info("archive shared", extra={"key": key, "bytes": size})
        return True

    async def lookup(self, key: str) -> dict[str, Any] | None:
        """The metadata of a shared entry (with `size`), or None."""
        try:
            raw = await self._redis.get(self._index + key)
        except RedisError:
            return None
        if raw is None:
            return None
        meta: dict[str, Any] = json.loads(raw)
        return meta

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        """The entry's bytes from S3, about 1 MiB at a time."""
        result = await obstore.get_async(self._store, self.object_key(key))
        async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
            yield bytes(chunk)

    async def copy_to(self, key: str, object_key: str) -> bool:
        """A server-side copy of the entry to another object (a job's result); False if it is gone."""
        try:
            await obstore.copy_async(self._store, self.object_key(key), object_key)
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    async def aclose(self) -> None:
        await self._redis.aclose()
