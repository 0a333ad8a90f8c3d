"""Where the service's CPU goes while it streams: py-spy on the running uvicorn, summed by component.

    python -m bench.profile                 # 100 x 2 MB from nginx, 8 downloads, samples only while the GIL is held
    python -m bench.profile --simulator     # the same order from the simulator instead (its CPU competes)
    python -m bench.profile --raw out.txt   # also keep py-spy's raw collapsed stacks

The service is CPU-bound at full speed (one event loop), so the share of GIL-holding samples per
component is the share of throughput it costs. `make profile` runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.nginx import nginx
from harness import processes

# First match wins: the component a stack belongs to, by the frames it contains.
COMPONENTS = (
    ("spool: size, CRC-32, keeping chunks", ("Spool.write",), ()),
    ("upstream: reading image bodies", ("_read_body", "data_received", "buffer_updated"), ()),
    ("upstream: requests, redirects", ("AiohttpFetcher.get", "Http1Fetcher.get", "AsyncClient.send", "build_request",
                                       "_download_once"), ()),
    ("ZIP writer (app/core/zip/writer.py, zipformat.py)", ("ZipWriter", "zipformat", "Encoder"), ()),
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
    parser.add_argument("--simulator", action="store_true", help="upstream = the simulator, not nginx")
    parser.add_argument("--native", action="store_true", help="include C frames (py-spy pauses the process)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory() as tmp, processes.simulator() as sim, contextlib.ExitStack() as stack:
        order_id = processes.seed(sim.url, args.images, args.size)
        upstream = sim.url
        if not args.simulator:  # nginx serves the same order: the service's own cost is all that is sampled
            web = stack.enter_context(nginx(Path(tmp)))
            web.add_order(httpx.get(f"{sim.url}/v3/orders/{order_id}").raise_for_status().json(), args.size)
            upstream = web.url
        svc = stack.enter_context(processes.service(upstream, Path(tmp) / "data", cache_max_bytes=0))
        url = f"{svc.url}/orders/{order_id}/images"
        processes.curl(url)  # warm
        raw = args.raw or Path(tmp) / "stacks.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(svc.pid), "--format", "raw", "--output", str(raw),
                                "--rate", "250", "--threads", "--gil",
                                *(["--native"] if args.native else ["--nonblocking"])], stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        cpu = svc.cpu_seconds()
        fetches = [processes.curl(url) for _ in range(args.downloads)]
        cpu = svc.cpu_seconds() - cpu
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        mb_s = sum(f.size for f in fetches) / 1e6 / sum(f.total for f in fetches)
        gb = sum(f.size for f in fetches) / 1e9
        print(f"{args.downloads} downloads of {args.images} x {args.size / 1e6:g} MB at {mb_s:.0f} MB/s, "
              f"{cpu / gb:.2f} CPU s per GB (while sampled)\n")
        print(summarize(raw))


if __name__ == "__main__":
    main()
