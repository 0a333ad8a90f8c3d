"""Memory stays flat whatever the order size: stream N x SIZE images, report the RSS growth.

    python -m bench.memory --images 400 --size 3000000
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import processes

MiB = 1024 * 1024


@dataclass
class MemoryResult:
    images: int
    bytes_streamed: int
    idle_rss: int
    peak_rss: int
    seconds: float
    zip_complete: bool

    @property
    def growth_mib(self) -> float:
        return (self.peak_rss - self.idle_rss) / MiB

    def line(self) -> str:
        return (f"{self.images} images, {self.bytes_streamed / 1e9:.2f} GB in {self.seconds:.1f} s "
                f"({self.bytes_streamed / MiB / self.seconds:.0f} MiB/s): idle RSS {self.idle_rss / MiB:.0f} MiB, "
                f"peak {self.peak_rss / MiB:.0f} MiB, growth {self.growth_mib:.0f} MiB")


def measure(images: int, size: int, work_dir: Path) -> MemoryResult:
    with processes.simulator() as sim, processes.service(sim.url, work_dir / "data", cache_max_bytes=0) as svc:
        warm = processes.seed(sim.url, 3, 100_000, name="warm-up")
        processes.stream_to_nowhere(f"{svc.url}/orders/{warm}/images")  # imports, pools, threads
        order_id = processes.seed(sim.url, images, size)
        idle = svc.rss()
        with processes.RssSampler(svc) as sampler:
            total, tail, _, seconds = processes.stream_to_nowhere(f"{svc.url}/orders/{order_id}/images")
        return MemoryResult(images, total, idle, sampler.peak, seconds, b"PK\x05\x06" in tail[-200:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=3_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(measure(args.images, args.size, Path(tmp)).line())


if __name__ == "__main__":
    main()
