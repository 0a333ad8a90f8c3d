"""Where finished job archives live: local disk by default, an S3-compatible bucket when S3_BUCKET is set.

Both go through `obstore`. A job always writes its archive to `<jobs_dir>/<id>.<attempt>.zip.part` first
(fsynced); `publish` then makes it the result: a rename on disk (LocalStore), or an upload to the
bucket followed by deleting the local file (S3Store). `locate` answers what a download serves: a
local path (streamed with Range, as before) or a presigned GET URL the route redirects to (Range
then comes from S3 itself), so API instances need no shared disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from app.config import Settings
from app.storage.s3 import s3_store


class ResultStore(Protocol):
    async def publish(self, job_id: str, part: Path) -> None: ...
    async def locate(self, job_id: str) -> Path | str | None: ...
    async def delete(self, job_id: str) -> None: ...
    async def copy(self, source_job_id: str, job_id: str) -> bool: ...
    async def adopt_shared(self, job_id: str, copy_to: Callable[[str], Awaitable[bool]]) -> bool:
        """Make a shared-cache entry (in the bucket) this job's result with `copy_to(object_key)`."""
        ...


def part_name(job_id: str, attempt: int) -> str:
    """One part file per attempt: a run whose lease lapsed may still be writing when the next attempt
    starts on the same disk, and the two must not write, rename or delete each other's file."""
    return f"{job_id}.{attempt}.zip.part"


def part_job_id(name: str) -> str:
    """The job a part file belongs to (the attempt is ignored)."""
    return name.split(".", 1)[0]


def result_key(job_id: str) -> str:
    return f"{job_id}.zip"


class LocalResults:
    """`<jobs_dir>/<id>.zip` on this machine's disk (one data_dir, as in the single-box mode)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._store = LocalStore(directory)

    async def publish(self, job_id: str, part: Path) -> None:
        await obstore.rename_async(self._store, part.name, result_key(job_id))

    async def locate(self, job_id: str) -> Path | None:
        path = self.directory / result_key(job_id)
        return path if path.is_file() else None

    async def delete(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotFoundError):
            await obstore.delete_async(self._store, result_key(job_id))

    async def copy(self, source_job_id: str, job_id: str) -> bool:
        """Another job's archive as this job's too (single-flight); False if it is gone."""
        try:
            await obstore.copy_async(self._store, result_key(source_job_id), result_key(job_id))
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    async def adopt_shared(self, job_id: str, copy_to: Callable[[str], Awaitable[bool]]) -> bool:
        """No: the shared cache only exists with S3_BUCKET, where results are S3Results."""
        return False


class S3Results:
    """Objects `<S3_PREFIX><id>.zip` in S3_BUCKET; downloads are presigned GETs valid S3_URL_TTL_SECONDS."""

    def __init__(self, store: S3Store, prefix: str, url_ttl: float) -> None:
        self._store = store
        self._prefix = prefix
        self._url_ttl = timedelta(seconds=url_ttl)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Results:
        return cls(s3_store(settings), settings.s3_prefix, settings.s3_url_ttl_seconds)

    def object_key(self, job_id: str) -> str:
        return self._prefix + result_key(job_id)

    def _key(self, job_id: str) -> str:
        return self.object_key(job_id)

    async def publish(self, job_id: str, part: Path) -> None:
        await obstore.put_async(self._store, self._key(job_id), part)
        await asyncio.to_thread(part.unlink, missing_ok=True)

    async def locate(self, job_id: str) -> str | None:
        try:
            await obstore.head_async(self._store, self._key(job_id))
        except (FileNotFoundError, NotFoundError):
            return None
        url: str = await obstore.sign_async(self._store, "GET", self._key(job_id), self._url_ttl)
        return url

    async def delete(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotFoundError):
            await obstore.delete_async(self._store, self._key(job_id))

    async def copy(self, source_job_id: str, job_id: str) -> bool:
        """A server-side copy of another job's archive (single-flight): no bytes pass through us."""
        try:
            await obstore.copy_async(self._store, self._key(source_job_id), self._key(job_id))
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    async def adopt_shared(self, job_id: str, copy_to: Callable[[str], Awaitable[bool]]) -> bool:
        """A server-side copy of the shared cache's object (same bucket) to this job's key."""
        return await copy_to(self.object_key(job_id))


def result_store(settings: Settings) -> ResultStore:
    if settings.s3_bucket:
        return S3Results.from_settings(settings)
    return LocalResults(settings.jobs_dir)
