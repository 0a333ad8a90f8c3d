"""The archive cache shared by every instance: index in Redis, bytes in S3 (REDIS_URL and S3_BUCKET).

Each instance keeps its local disk cache (app/archives/cache.py) as the fast path. When an instance commits
an archive there, it also uploads it to `<S3_PREFIX>cache/<key>.zip` and records the entry's
metadata under `<REDIS_KEY_PREFIX>cache:<key>` with the cache TTL, so another instance that misses
locally can serve it (streamed from S3) instead of fetching the order's images again. The key is the
local cache's key (order, options, order version), so a reprocessed order still misses, and only
archives with no failures are ever committed, as locally.

Entries expire with CACHE_TTL_SECONDS (Redis TTL; the S3 objects are overwritten by the next
publication of the same key, and a bucket lifecycle rule should delete `cache/` objects after the
TTL: see README "Running at scale").
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
import redis.asyncio as aioredis
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store
from redis.exceptions import RedisError
from starlette.responses import Response, StreamingResponse

if TYPE_CHECKING:
    from app.archives.flights import Flight
    from app.wiring import Services

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


async def shared_hit(services: Services, key: str, order_name: str | None, order_id: str) -> Response | None:
    """A response streaming another instance's archive for this cache key from S3, if one is indexed."""
    shared: SharedCache | None = services.shared_cache
    if shared is None:
        return None
    meta = await shared.lookup(key)
    if meta is None:
        return None
    from app.api.responses import archive_headers

    headers = archive_headers(order_name, order_id, meta["total"], meta["downloaded"], 0)
    headers |= {"X-Cache": "shared", "Content-Length": str(meta["size"])}
    services.stats.zips_served += 1
    services.stats.bytes_sent += int(meta["size"])
    return StreamingResponse(shared.stream(key), media_type="application/zip", headers=headers)


async def share_and_land(services: Services, key: str, flight: Flight | None) -> None:
    """After a streamed archive ended: share the entry it committed locally (if any), then let
    whoever waits for this flight look (so they find it, here or on another instance)."""
    shared: SharedCache | None = services.shared_cache
    if flight is None:
        return
    try:
        local = services.cache.directory / f"{key}.zip"
        if shared is not None and local.is_file():
            meta = json.loads((services.cache.directory / f"{key}.json").read_text())
            await shared.publish(key, local, meta)
    except (OSError, ValueError) as exc:
        log.warning("could not share a cached archive", extra={"key": key, "error": str(exc)})
    finally:
        await flight.land()
