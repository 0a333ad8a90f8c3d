"""Soak: many concurrent callers for a while, with upstream faults injected at random; every answer checked.

    python -m bench.soak                      # 50 callers, 60 s, 5 % of upstream downloads faulty
    python -m bench.soak --callers 10 --seconds 10

The simulator and the service run as separate processes (harness.processes). Each caller downloads random
orders in a loop and validates every ZIP (CRC of every member, manifest counts, the report present
exactly when something failed). The service's RSS, open file descriptors and asyncio tasks are
sampled throughout. Exit status 1 if any archive is corrupt, any 5xx is undocumented, or RSS, fds or
tasks grow.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness import processes

MiB = 1024 * 1024
DOCUMENTED = {200, 422, 429, 502, 503}
"""Statuses the batch route documents (429/503: rate limit and breaker); a 5xx outside them is a bug."""

SERVICE_KEY = "soak-service-key"

FAULT_MIX = [  # (kind, share of the downloads, extra fields): 5 % in all
    ("status", 0.015, {"status": 503}),
    ("truncate", 0.01, {"after_bytes": 5000}),
    ("expired_asset", 0.01, {}),
    ("stall", 0.005, {"after_bytes": 5000, "seconds": 2.0}),
    ("rate_limit", 0.01, {"retry_after": 1}),
]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[int] = field(default_factory=Counter)
    zips: int = 0
    corrupt: list[str] = field(default_factory=list)
    images: int = 0
    image_failures: int = 0
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0


def validate(body: bytes, total: int) -> tuple[int, int]:
    """(downloaded, failed) of a valid archive; raises AssertionError on anything wrong."""
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None, "bad CRC"
        names = zf.namelist()
        manifest = json.loads(zf.read("_manifest.json"))
    images = [n for n in names if n not in ("_manifest.json", "_download_report.txt")]
    assert manifest["total"] == total, f"total {manifest['total']} != {total}"
    assert manifest["downloaded"] == len(images), "manifest count != members"
    assert manifest["downloaded"] + manifest["failed"] == total, "counts do not add up"
    assert sorted(f["name"] for f in manifest["files"]) == sorted(images), "manifest names != members"
    assert ("_download_report.txt" in names) == (manifest["failed"] > 0), "report presence"
    return manifest["downloaded"], manifest["failed"]


def caller(url: str, orders: list[tuple[str, int]], until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": SERVICE_KEY}) as client:
        while time.monotonic() < until:
            order_id, total = rng.choice(orders)
            started = time.monotonic()
            try:
                response = client.get(f"/orders/{order_id}/images")
            except httpx.HTTPError as exc:  # a cut transfer: never a "valid-looking" short ZIP
                with tally.lock:
                    tally.corrupt.append(f"transport error {type(exc).__name__}")
                continue
            elapsed = time.monotonic() - started
            with tally.lock:
                tally.statuses[response.status_code] += 1
                tally.seconds.append(elapsed)
                tally.bytes += len(response.content)
            if response.status_code != 200:
                continue
            try:
                downloaded, failed = validate(response.content, total)
            except (AssertionError, zipfile.BadZipFile, KeyError, ValueError) as exc:
                with tally.lock:
                    tally.corrupt.append(f"{order_id}: {exc}")
                continue
            with tally.lock:
                tally.zips += 1
                tally.images += downloaded
                tally.image_failures += failed


def sample(proc: processes.Proc, url: str) -> dict[str, Any]:
    p = psutil.Process(proc.pid)
    stats = httpx.get(f"{url}/api/stats", timeout=10, headers={"X-API-Key": SERVICE_KEY}).json()
    return {"t": time.monotonic(), "rss": p.memory_info().rss, "fds": p.num_fds(), "tasks": stats["tasks"],
            "in_flight": stats["downloads"]["in_flight"], "batches": stats["downloads"]["active_batches"]}


def idle(proc: processes.Proc, url: str, timeout: float = 60) -> dict[str, Any]:
    """A sample taken once nothing runs any more."""
    end = time.monotonic() + timeout
    while True:
        s = sample(proc, url)
        if (s["in_flight"] == 0 and s["batches"] == 0) or time.monotonic() > end:
            return s
        time.sleep(0.5)


def run(
    callers: int, seconds: float, orders_count: int, images: int, size: int, fault_share: float,
    kinds: set[str] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, processes.simulator("--latency", "0.02") as sim:
        orders = [(processes.seed(sim.url, images, size + 997 * i, name=f"Soak {i}"), images) for i in range(orders_count)]
        scale = fault_share / 0.05
        for kind, share, extra in FAULT_MIX:
            if kinds is not None and kind not in kinds:
                continue
            httpx.post(f"{sim.url}/_simulator/faults", json={"kind": kind, "probability": share * scale, **extra},
                       timeout=10).raise_for_status()
        # the rate limiter stays on, exercised under load; all callers share the one service key, whose
        # bucket (1000/minute) their ~350 requests a minute stay under
        settings = {"cache_ttl_seconds": 0, "image_timeout_seconds": 20, "max_global_downloads": 40,
                    "service_api_key": SERVICE_KEY, "rate_limit": "1000/minute"}
        with processes.service(sim.url, Path(tmp) / "data", **settings) as svc:
            tally = Tally()
            warm_until = time.monotonic() + 5
            threads = [threading.Thread(target=caller, args=(svc.url, orders, warm_until, Tally(), i), daemon=True)
                       for i in range(callers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            before = idle(svc, svc.url)
            until = time.monotonic() + seconds
            threads = [threading.Thread(target=caller, args=(svc.url, orders, until, tally, 100 + i), daemon=True)
                       for i in range(callers)]
            for t in threads:
                t.start()
            samples = []
            while any(t.is_alive() for t in threads):
                with contextlib.suppress(httpx.HTTPError, psutil.Error):
                    samples.append(sample(svc, svc.url))
                time.sleep(2)
            for t in threads:
                t.join()
            after = idle(svc, svc.url)
            faults = httpx.get(f"{sim.url}/_simulator/faults", timeout=10).json()
            sim_stats = httpx.get(f"{sim.url}/_simulator/stats", timeout=10).json()
    loaded = samples[len(samples) // 4:] or samples  # after the first quarter: the service is at steady load
    half = len(loaded) // 2 or 1
    rss_first = statistics.mean(s["rss"] for s in loaded[:half])
    rss_last = statistics.mean(s["rss"] for s in loaded[half:]) if loaded[half:] else rss_first
    secs = sorted(tally.seconds) or [0.0]
    undocumented = {code: n for code, n in tally.statuses.items() if code not in DOCUMENTED}
    result = {
        "callers": callers,
        "seconds": seconds,
        "requests": sum(tally.statuses.values()),
        "statuses": dict(sorted(tally.statuses.items())),
        "zips_validated": tally.zips,
        "corrupt": len(tally.corrupt),
        "corrupt_examples": tally.corrupt[:5],
        "undocumented_statuses": undocumented,
        "images_served": tally.images,
        "images_reported_failed": tally.image_failures,
        "faults_fired": {f["kind"]: f["fired"] for f in faults},
        "upstream_downloads": sim_stats["enhanced"],
        "gb_served": round(tally.bytes / 1e9, 2),
        "latency_p50_s": round(secs[len(secs) // 2], 2),
        "latency_p95_s": round(secs[int(len(secs) * 0.95)], 2),
        "rss_idle_before_mib": round(before["rss"] / MiB, 1),
        "rss_idle_after_mib": round(after["rss"] / MiB, 1),
        "rss_loaded_first_half_mib": round(rss_first / MiB, 1),
        "rss_loaded_second_half_mib": round(rss_last / MiB, 1),
        "rss_peak_mib": round(max(s["rss"] for s in samples) / MiB, 1) if samples else None,
        "fds_idle_before": before["fds"],
        "fds_idle_after": after["fds"],
        "tasks_idle_before": before["tasks"],
        "tasks_idle_after": after["tasks"],
    }
    result["verdict"] = verdict(result)
    return result


def verdict(r: dict[str, Any]) -> list[str]:
    """Every broken promise, in words; empty when the soak passed."""
    problems = []
    if r["corrupt"]:
        problems.append(f"{r['corrupt']} corrupt archives or cut transfers")
    if r["undocumented_statuses"]:
        problems.append(f"undocumented statuses {r['undocumented_statuses']}")
    if r["zips_validated"] == 0:
        problems.append("no archive was served")
    if r["rss_loaded_second_half_mib"] - r["rss_loaded_first_half_mib"] > 30:
        problems.append("RSS grew under steady load")
    if r["rss_idle_after_mib"] - r["rss_idle_before_mib"] > 40:
        problems.append("idle RSS grew")
    if r["fds_idle_after"] > r["fds_idle_before"] + 10:
        problems.append("file descriptors leaked")
    if r["tasks_idle_after"] > r["tasks_idle_before"] + 2:
        problems.append("asyncio tasks leaked")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--faults", type=float, default=0.05, help="share of upstream downloads that fail")
    parser.add_argument("--kinds", default=None, help="only these fault kinds of the mix, comma separated")
    args = parser.parse_args()
    kinds = set(args.kinds.split(",")) if args.kinds else None
    result = run(args.callers, args.seconds, args.orders, args.images, args.size, args.faults, kinds)
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["verdict"] else 0)


if __name__ == "__main__":
    main()
