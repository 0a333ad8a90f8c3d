"""In-process counters behind GET /api/stats; the Prometheus metrics (app/ops/metrics.py) read them at scrape time."""

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
