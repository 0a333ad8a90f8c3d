"""The service alone in front of nginx: CPU seconds per GB and MB/s, for paired before/after runs.

    python -m bench.service_cpu             # 8 downloads of 100 x 2 MB
    python -m bench.service_cpu --downloads 16

Case 7 of `make bench` alternates the service with curl --parallel, so the figure moves with the
machine's load; to compare two versions of the code, run this in each tree in turn (A, B, A, B).
Also prints the service's minor page faults per GB (fresh buffers the kernel had to zero).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import httpx

from bench.nginx import nginx
from harness import processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--downloads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, processes.simulator() as sim, nginx(Path(tmp)) as web:
        order_id = processes.seed(sim.url, args.images, args.size)
        web.add_order(httpx.get(f"{sim.url}/v3/orders/{order_id}").raise_for_status().json(), args.size)
        with processes.service(web.url, Path(tmp) / "data", cache_max_bytes=0) as svc:
            url = f"{svc.url}/orders/{order_id}/images"
            processes.curl(url)  # warm: imports, pools, threads
            faults = _minor_faults(svc.pid)
            user, system = svc.cpu_split()
            fetches = [processes.curl(url) for _ in range(args.downloads)]
            user_after, system_after = svc.cpu_split()
            faults = _minor_faults(svc.pid) - faults
    gb = sum(f.size for f in fetches) / 1e9
    user, system = (user_after - user) / gb, (system_after - system) / gb
    print(f"{args.downloads} x {args.images} x {args.size / 1e6:g} MB: {user + system:.2f} CPU s per GB "
          f"(user {user:.2f}, system {system:.2f}), {statistics.median(f.mb_per_s for f in fetches):.0f} MB/s "
          f"median, {faults / gb:.0f} minor page faults per GB")


def _minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


if __name__ == "__main__":
    main()
