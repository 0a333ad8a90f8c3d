"""Where the service's CPU goes while it streams: py-spy on the running uvicorn, summed by component.

    python -m bench.profile                 # 100 x 2 MB, 8 downloads, samples only while the GIL is held
    python -m bench.profile --raw out.txt   # also keep py-spy's raw collapsed stacks

The service is CPU-bound at full speed (one event loop), so the share of GIL-holding samples per
component is the share of throughput it costs. `make profile` runs this.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import harness

# First match wins: the component a stack belongs to, by the frames it contains.
COMPONENTS = (
    ("upstream: reading image bodies (httpx/httpcore)", ("_read_body",), ("Spool.write",)),
    ("spool: size, CRC-32, keeping chunks", ("Spool.write",), ()),
    ("upstream: sending requests, redirects (httpx/httpcore)", ("AsyncClient.send", "build_request"), ()),
    ("ZIP writer thread (stream-zip)", ("ZipWriter", "stream_zip"), ()),
    ("response: sending the ZIP (uvicorn, middleware)", ("stream_response",), ()),
    ("engine: per-image bookkeeping", ("Batch.",), ()),
)


def component(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, needles, unless in COMPONENTS:
        if any(n in joined for n in needles) and not any(u in joined for u in unless):
            return name
    return "event loop and other"


def summarize(raw: Path, top: int = 12) -> str:
    by_component: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        total += int(count)
        by_component[component(frames)] += int(count)
        by_frame[stack.split(";")[-1]] += int(count)
    lines = [f"{total} samples with the GIL held", "", "share  component"]
    lines += [f"{n / total:6.1%} {name}" for name, n in by_component.most_common()]
    lines += ["", "share  hottest frames (self time)"]
    lines += [f"{n / total:6.1%} {frame}" for frame, n in by_frame.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--downloads", type=int, default=8)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory() as tmp, harness.simulator() as sim, \
            harness.service(sim.url, Path(tmp) / "data", cache_max_bytes=0) as svc:
        order_id = harness.seed(sim.url, args.images, args.size)
        url = f"{svc.url}/orders/{order_id}/images"
        harness.curl(url)  # warm
        raw = args.raw or Path(tmp) / "stacks.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(svc.pid), "--format", "raw", "--output", str(raw),
                                "--rate", "250", "--threads", "--gil"], stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        fetches = [harness.curl(url) for _ in range(args.downloads)]
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        mb_s = sum(f.size for f in fetches) / 1e6 / sum(f.total for f in fetches)
        print(f"{args.downloads} downloads of {args.images} x {args.size / 1e6:g} MB at {mb_s:.0f} MB/s\n")
        print(summarize(raw))


if __name__ == "__main__":
    main()
