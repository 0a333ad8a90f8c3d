"""In-process counters behind GET /api/stats; the Prometheus metrics (app/ops/metrics.py) read them at scrape time.

Every counter is moved here and only here, by a method named for what happened (an order fetched,
images downloaded, bytes sent, an archive served), so what each counter means is written once:
the doors, the archive policy, the engine and the resume only say what happened.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    orders_processed: int = 0
    images_downloaded: int = 0
    images_failed: int = 0
    images_waited_on_disk: int = 0
    zips_served: int = 0
    partial_zips: int = 0
    bytes_sent: int = 0
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))

    def order_fetched(self) -> None:
        """An order read from Autoenhance for a batch or a job."""
        self.orders_processed += 1

    def images(self, downloaded: int, failed: int = 0, waited_on_disk: int = 0) -> None:
        """Files a batch (once, when it closes) or a resume (the ones it fetched again) ended with,
        and how many of them waited for their reader on disk rather than in memory."""
        self.images_downloaded += downloaded
        self.images_failed += failed
        self.images_waited_on_disk += waited_on_disk

    def sent(self, size: int) -> None:
        """Archive bytes handed to a caller, chunk by chunk as a stream or a resume writes them."""
        self.bytes_sent += size

    def served(self, size: int | None = None, *, partial: bool = False) -> None:
        """One archive handed over whole: streamed to its end, served from a cache, or a job's download
        (`size` counts bytes not already counted chunk by chunk; None for a redirect to S3)."""
        self.zips_served += 1
        self.partial_zips += int(partial)
        if size is not None:
            self.bytes_sent += size

    def record_error(self, where: str, message: str) -> None:
        self.errors.append({"at": round(time.time(), 3), "where": where, "message": message})

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "orders_processed": self.orders_processed,
            "images_downloaded": self.images_downloaded,
            "images_failed": self.images_failed,
            "images_waited_on_disk": self.images_waited_on_disk,
            "zips_served": self.zips_served,
            "partial_zips": self.partial_zips,
            "bytes_sent": self.bytes_sent,
            "recent_errors": list(self.errors),
        }
