"""DATA_DIR's disk budget: new work is refused with a clear 503 before the disk fills.

Job results, the archive cache, spool files and databases all live under DATA_DIR. Without a bound,
anonymous callers could fill it (thirty jobs for one cached archive used to keep thirty copies for a
day). Two limits, either of which refuses a new job:
- DATA_DIR_MAX_BYTES: what DATA_DIR may hold, counted as `du` does (a file hard-linked under several
  names counts once; job results share the cached archive they came from);
- DATA_DIR_MIN_FREE_BYTES: free space the filesystem must keep (the disk may be shared).

The count walks DATA_DIR in a thread, at most once every MEASURE_SECONDS: a flood of requests costs
one walk, not one each.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from app.errors import Unavailable

MEASURE_SECONDS = 2.0


class StorageBudgetExceeded(Unavailable):
    message = "The service's storage budget is used up; try again later"


def disk_usage(directory: Path) -> int:
    """Bytes the files under `directory` occupy, each inode once (hard links share their blocks)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # deleted while we walked
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


class DiskBudget:
    """Checks DATA_DIR against its budget before new work is accepted."""

    def __init__(self, directory: Path, max_bytes: int, min_free_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._measured = (float("-inf"), 0)  # (monotonic time, bytes)
        self._lock = asyncio.Lock()

    async def used(self) -> int:
        async with self._lock:
            at, used = self._measured
            if time.monotonic() - at >= MEASURE_SECONDS:
                used = await asyncio.to_thread(disk_usage, self.directory)
                self._measured = (time.monotonic(), used)
            return used

    async def check(self) -> None:
        """Raise StorageBudgetExceeded (503, Retry-After) if DATA_DIR is over budget or the disk nearly full."""
        if self.min_free_bytes:
            free = (await asyncio.to_thread(shutil.disk_usage, self.directory)).free
            if free < self.min_free_bytes:
                raise StorageBudgetExceeded(
                    "The service's disk is nearly full, so it takes no new jobs now; try again later",
                    headers={"Retry-After": "300"},
                )
        if self.max_bytes and await self.used() >= self.max_bytes:
            raise StorageBudgetExceeded(
                "The service's storage budget (DATA_DIR_MAX_BYTES) is used up, so it takes no new jobs now; "
                "finished jobs' archives expire and free it: try again later",
                headers={"Retry-After": "300"},
            )
