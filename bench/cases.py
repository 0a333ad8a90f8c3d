"""The seven benchmark cases of `make bench`, each measured beside its references in the same run.

Every case returns rows of (figure, reference, ratio, target); `bench/__main__.py` prints them.
References: **limit** (bench/limit.py: the images fetched straight from the simulator by a plain
client with 5 workers), **naive** (bench/naive.py: the seed-001 design, whole ZIP first) and
**nginx + curl** (bench/nginx.py: C on both ends, the machine's own limit for these bytes).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.limit import fetch_direct
from bench.nginx import curl_parallel, nginx, proxy
from harness import processes
from harness.processes import Fetch, Proc

MiB = 1024 * 1024


@dataclass
class Row:
    case: str
    figure: str
    ours: str
    reference: str
    ratio: str
    target: str
    met: bool | None


@dataclass
class Bench:
    """One simulator for the whole run; services and baselines are started per case."""

    sim: Proc
    work: Path

    def latency(self, seconds: float) -> None:
        httpx.put(f"{self.sim.url}/_simulator/config", json={"download_latency": seconds}).raise_for_status()

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.sim.url}/_simulator/stats").json())

    def seed(self, count: int, size: int, name: str = "Bench order") -> str:
        return processes.seed(self.sim.url, count, size, name=name)

    @contextlib.contextmanager
    def service(self, name: str, **settings: Any) -> Iterator[Proc]:
        with processes.service(self.sim.url, self.work / name, log=self.work / f"{name}.log", **settings) as svc:
            warm = processes.seed(self.sim.url, 3, 50_000, name="warm-up")
            latency = self.config()["download_latency"]
            self.latency(0)
            processes.curl(f"{svc.url}/orders/{warm}/images")  # imports, pools, threads
            self.latency(latency)
            yield svc

    @contextlib.contextmanager
    def naive(self) -> Iterator[Proc]:
        with processes.naive(self.sim.url, log=self.work / "naive.log") as proc:
            yield proc

    def config(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim.url}/_simulator/config").json())

    def order_fetch_seconds(self, order_id: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            httpx.get(f"{self.sim.url}/v3/orders/{order_id}", headers={"x-api-key": processes.SIM_KEY}).raise_for_status()
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def _ok(fetch: Fetch) -> Fetch:
    if fetch.status != 200:
        raise RuntimeError(f"benchmark download answered HTTP {fetch.status}")
    return fetch


def _median_fetch(get: Callable[[], Fetch], runs: int) -> Fetch:
    return _median([_ok(get()) for _ in range(runs)])


def _median(fetches: list[Fetch]) -> Fetch:
    return sorted(fetches, key=lambda f: f.total)[len(fetches) // 2]


def _check_zip(path: Path, members: int) -> None:
    with zipfile.ZipFile(path) as archive:
        if archive.testzip() is not None:
            raise RuntimeError(f"{path.name}: a member failed its CRC check")
        images = [n for n in archive.namelist() if not n.startswith("_")]
        if len(images) != members:
            raise RuntimeError(f"{path.name}: {len(images)} images, expected {members}")


def _check_zip_once(url: str, path: Path, members: int) -> None:
    _ok(processes.curl(url, output=str(path)))
    _check_zip(path, members)
    path.unlink()


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


# -- 1. latency-bound -----------------------------------------------------------------------------


def latency_bound(bench: Bench, images: int = 40, latency: float = 0.5, runs: int = 3) -> list[Row]:
    bench.latency(latency)
    order_id = bench.seed(images, 500_000)
    order_fetch = bench.order_fetch_seconds(order_id)
    bound = math.ceil(images / 5) * latency + order_fetch
    with bench.service("latency", cache_max_bytes=0) as svc, bench.naive() as naive:
        url = f"{svc.url}/orders/{order_id}/images"
        _check_zip_once(url, bench.work / "latency.zip", images)
        ours, limit, base = _interleaved(runs, [
            lambda: processes.curl(url),
            lambda: fetch_direct(bench.sim.url, order_id),
            lambda: processes.curl(f"{naive.url}/orders/{order_id}/images"),
        ])
    bench.latency(0)
    ours_f, limit_f, base_f = (_median(fetches) for fetches in (ours, limit, base))
    case = f"1. latency-bound ({images} x 0.5 MB, {latency:g} s each)"
    return [
        Row(case, "time to first byte", f"{ours_f.ttfb:.2f} s", f"naive {base_f.ttfb:.2f} s",
            _ratio(ours_f.ttfb, base_f.ttfb), "<= 1.0 s", ours_f.ttfb <= 1.0),
        Row(case, "total", f"{ours_f.total:.2f} s",
            f"bound {bound:.2f} s; limit {limit_f.total:.2f} s; naive {base_f.total:.2f} s",
            f"{ours_f.total / bound:.2f}x bound", "<= 1.15x bound", ours_f.total <= 1.15 * bound),
    ]


def _interleaved(runs: int, fetchers: list[Callable[[], Fetch]]) -> list[list[Fetch]]:
    """Run each fetcher `runs` times, taking turns, so a busy moment hits all of them alike."""
    results: list[list[Fetch]] = [[] for _ in fetchers]
    for _ in range(runs):
        for fetches, fetch in zip(results, fetchers, strict=True):
            fetches.append(_ok(fetch()))
    return results



# -- 2. throughput-bound --------------------------------------------------------------------------


def throughput(bench: Bench, images: int = 100, size: int = 2_000_000, runs: int = 7) -> list[Row]:
    bench.latency(0)
    order_id = bench.seed(images, size)
    with bench.service("throughput", cache_max_bytes=0) as svc, bench.naive() as naive:
        url = f"{svc.url}/orders/{order_id}/images"
        _check_zip_once(url, bench.work / "throughput.zip", images)
        cpu = {proc.pid: proc.cpu_seconds() for proc in (svc, naive)}
        ours, limit, base = _interleaved(runs, [
            lambda: processes.curl(url),
            lambda: fetch_direct(bench.sim.url, order_id),
            lambda: processes.curl(f"{naive.url}/orders/{order_id}/images"),
        ])
        ours_cpu, base_cpu = ((proc.cpu_seconds() - cpu[proc.pid]) / (sum(f.size for f in fetches) / 1e9)
                              for proc, fetches in ((svc, ours), (naive, base)))
    ours_mb, limit_mb, base_mb = (statistics.median(f.mb_per_s for f in fetches) for fetches in (ours, limit, base))
    case = f"2. throughput-bound ({images} x {size / 1e6:g} MB, no latency)"
    return [
        Row(case, "MB/s", f"{ours_mb:.0f}", f"limit {limit_mb:.0f}; naive {base_mb:.0f}",
            f"{ours_mb / limit_mb:.2f} of limit", ">= 0.50 of limit", ours_mb >= 0.5 * limit_mb),
        Row(case, "CPU s per GB delivered", f"{ours_cpu:.2f}", f"naive {base_cpu:.2f}", _ratio(ours_cpu, base_cpu),
            "(reported)", None),
    ]


# -- 3. size --------------------------------------------------------------------------------------


def size(bench: Bench, images: int = 1000, size: int = 2_000_000) -> list[Row]:
    bench.latency(0)
    order_id = bench.seed(images, size)
    with bench.service("size", cache_max_bytes=0) as svc:
        idle = svc.rss()
        with processes.RssSampler(svc) as sampler:
            ours = _ok(processes.curl(f"{svc.url}/orders/{order_id}/images"))
        growth = (sampler.peak - idle) / MiB
    with bench.naive() as naive:
        naive_idle = naive.rss()
        with processes.RssSampler(naive) as naive_sampler:
            base = _ok(processes.curl(f"{naive.url}/orders/{order_id}/images"))
        naive_growth = (naive_sampler.peak - naive_idle) / MiB
    case = f"3. size ({images} x {size / 1e6:g} MB = {ours.size / 1e9:.1f} GB streamed)"
    return [
        Row(case, "peak RSS growth", f"{growth:.0f} MiB", f"idle RSS {idle / MiB:.0f} MiB; naive growth {naive_growth:.0f} MiB",
            f"{growth / (idle / MiB):.2f}x idle", "<= 100 MiB", growth <= 100),
        Row(case, "first byte / total", f"{ours.ttfb:.2f} s / {ours.total:.1f} s",
            f"naive {base.ttfb:.1f} s / {base.total:.1f} s", _ratio(ours.total, base.total), "(reported)", None),
    ]


# -- 4. fairness ----------------------------------------------------------------------------------


def fairness(bench: Bench, latency: float = 0.2, runs: int = 3) -> list[Row]:
    """MAX_GLOBAL_DOWNLOADS=5 so the big order alone fills the process-wide budget: the worst case."""
    bench.latency(latency)
    big = bench.seed(100, 2_000_000, name="big")
    small = bench.seed(1, 2_000_000, name="small")
    with bench.service("fairness", cache_max_bytes=0, max_global_downloads=5) as svc:
        ours_alone, ours_during, overlapped = _small_during_big(svc.url, big, small, runs)
    with bench.naive() as naive:
        base_alone, base_during, _ = _small_during_big(naive.url, big, small, runs)
    bench.latency(0)
    case = f"4. fairness (1-image order during a 100-image one, {latency:g} s latency, global budget 5)"
    ratio = ours_during / ours_alone
    return [
        Row(case, "1-image order: during / alone", f"{ours_during:.2f} s / {ours_alone:.2f} s",
            f"naive {base_during:.2f} s / {base_alone:.2f} s (no global budget)", f"{ratio:.2f}x alone",
            "<= 2x alone", ratio <= 2 and overlapped),
    ]


def _small_during_big(base_url: str, big: str, small: str, runs: int) -> tuple[float, float, bool]:
    alone = _median_fetch(lambda: processes.curl(f"{base_url}/orders/{small}/images"), runs).total
    big_done = threading.Event()

    def run_big() -> None:
        try:
            _ok(processes.curl(f"{base_url}/orders/{big}/images"))
        finally:
            big_done.set()

    thread = threading.Thread(target=run_big)
    thread.start()
    time.sleep(1.0)  # the big order now holds the whole budget
    during = _median_fetch(lambda: processes.curl(f"{base_url}/orders/{small}/images"), runs).total
    overlapped = not big_done.is_set()  # every small fetch ran while the big one was still going
    thread.join()
    return alone, during, overlapped


# -- 5. many callers ------------------------------------------------------------------------------


def many_callers(bench: Bench, callers: int = 20, images: int = 50, latency: float = 0.1) -> list[Row]:
    bench.latency(latency)
    orders = [bench.seed(images, 500_000, name=f"caller {i}") for i in range(callers)]
    out = bench.work / "callers"
    out.mkdir(exist_ok=True)
    with bench.service("callers", cache_max_bytes=0) as svc:
        ours = _concurrently(svc.url, orders, out)
        for fetch, order_id in zip(ours, orders, strict=True):
            path = out / f"{order_id}.zip"
            if fetch.status == 200:
                _check_zip(path, images)
            else:
                print(f"   caller got HTTP {fetch.status}: {path.read_text(errors='replace')[:300]}")
            path.unlink()
    with bench.naive() as naive:
        base = _concurrently(naive.url, orders, None)
    alone = fetch_direct(bench.sim.url, orders[0]).total
    bench.latency(0)

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    ok = [f.total for f in ours if f.status == 200]
    errors = len(ours) - len(ok)
    base_ok = [f.total for f in base if f.status == 200]
    case = f"5. many callers ({callers} concurrent x {images}-image orders, {latency:g} s latency)"
    return [
        Row(case, "p50 / p95 total", f"{p(ok, 50):.2f} s / {p(ok, 95):.2f} s",
            f"naive {p(base_ok, 50):.2f} s / {p(base_ok, 95):.2f} s; limit, one caller alone {alone:.2f} s",
            f"{p(ok, 95) / p(base_ok, 95):.2f}x naive p95", "p95 reported", None),
        Row(case, "errors (every ZIP checked)", str(errors), f"naive {len(base) - len(base_ok)}", "",
            "0", errors == 0),
    ]


def _concurrently(base_url: str, orders: list[str], out: Path | None) -> list[Fetch]:
    def one(order_id: str) -> Fetch:
        target = str(out / f"{order_id}.zip") if out else "/dev/null"
        return processes.curl(f"{base_url}/orders/{order_id}/images", output=target)

    with ThreadPoolExecutor(len(orders)) as pool:
        return list(pool.map(one, orders))


# -- 6. repeat (cache) ----------------------------------------------------------------------------


def repeat(bench: Bench, images: int = 100, size: int = 2_000_000, runs: int = 7) -> list[Row]:
    bench.latency(0)
    order_id = bench.seed(images, size)
    root = bench.work / "static"
    root.mkdir(exist_ok=True)
    first = root / "order.zip"
    with bench.service("repeat") as svc, processes.static(root) as static, nginx(bench.work) as web:
        url = f"{svc.url}/orders/{order_id}/images"
        _ok(processes.curl(url, output=str(first)))  # fills the cache as it streams
        _check_zip(first, images)
        same_file = web.add_file(first)  # the bytes the cache holds, served by nginx (sendfile)
        before = bench.stats()
        ours, plain, c_ref = _interleaved(runs, [
            lambda: processes.curl(url),
            lambda: processes.curl(f"{static.url}/order.zip"),
            lambda: processes.curl(same_file),
        ])
        after = bench.stats()
    image_calls = sum(after[k] - before[k] for k in ("enhanced", "asset"))
    order_calls = after["order_get"] - before["order_get"]
    ours_mb, plain_mb, nginx_mb = (statistics.median(f.mb_per_s for f in fetches) for fetches in (ours, plain, c_ref))
    case = f"6. repeat ({images} x {size / 1e6:g} MB again, from the cache)"
    return [
        Row(case, "MB/s", f"{ours_mb:.0f}", f"nginx, same file {nginx_mb:.0f}; Python static file {plain_mb:.0f}",
            f"{ours_mb / nginx_mb:.2f} of nginx", ">= 0.80 of nginx", ours_mb >= 0.8 * nginx_mb),
        Row(case, "upstream image calls", str(image_calls),
            f"order look-ups {order_calls} ({runs} requests: revalidation)", "", "0", image_calls == 0),
    ]


# -- 7. the machine's limit: nginx upstream, curl client ----------------------------------------------


def against_nginx(bench: Bench, images: int = 100, size: int = 2_000_000, runs: int = 5) -> list[Row]:
    """The service in front of nginx vs nginx as a reverse proxy of the same nginx, taking turns, with
    curl fetching the same images straight from nginx as the machine's limit.

    The targets are ratios to the nginx proxy measured in the same turns (bench/nginx.py `proxy`):
    what a C middle process reaches and spends on this machine, so they hold on any machine."""
    order_id = bench.seed(images, size)
    order = httpx.get(f"{bench.sim.url}/v3/orders/{order_id}").raise_for_status().json()
    with nginx(bench.work) as web, proxy(bench.work, web.url) as middle, processes.service(
        web.url, bench.work / "nginx-service", log=bench.work / "nginx-service.log", cache_max_bytes=0
    ) as svc:
        paths = [f"/v3/images/{image_id}/enhanced" for image_id in web.add_order(order, size)]
        url = f"{svc.url}/orders/{order_id}/images"
        _check_zip_once(url, bench.work / "nginx.zip", images)  # also the warm-up
        user, system = svc.cpu_split()
        proxy_before = middle.cpu_seconds()
        ours, limit, proxied = _interleaved(runs, [
            lambda: processes.curl(url),
            lambda: curl_parallel([web.url + path for path in paths]),
            lambda: curl_parallel([middle.url + path for path in paths]),
        ])
        gb = sum(f.size for f in ours) / 1e9
        ours_user, ours_system = ((after - before) / gb for after, before in zip(svc.cpu_split(), (user, system),
                                                                                 strict=True))
        ours_cpu = ours_user + ours_system
        proxy_cpu = (middle.cpu_seconds() - proxy_before) / (sum(f.size for f in proxied) / 1e9)
    ours_mb, limit_mb, proxy_mb = (statistics.median(f.mb_per_s for f in fetches) for fetches in (ours, limit, proxied))
    case = f"7. against nginx ({images} x {size / 1e6:g} MB from nginx; nginx as a reverse proxy is the reference)"
    return [
        Row(case, "MB/s", f"{ours_mb:.0f}",
            f"through nginx as a proxy {proxy_mb:.0f}; curl straight from nginx {limit_mb:.0f}",
            f"{ours_mb / proxy_mb:.2f} of the nginx proxy, {ours_mb / limit_mb:.2f} of curl",
            ">= 0.80 of the proxy", ours_mb >= 0.8 * proxy_mb),
        Row(case, "CPU s per GB (user + system)", f"{ours_cpu:.2f}",
            f"nginx proxy {proxy_cpu:.2f}; of ours, system (kernel) {ours_system:.2f}",
            f"{ours_cpu / proxy_cpu:.2f}x the nginx proxy", "<= 1.5x the proxy", ours_cpu <= 1.5 * proxy_cpu),
    ]


# -- 8. processes and order sizes -----------------------------------------------------------------


def process_counts(
    bench: Bench, counts: tuple[int, ...] = (1, 2, 4), callers: int = 12, images: int = 50, size: int = 400_000
) -> list[Row]:
    """The same order mix (many callers, 50-image orders) against `serve --workers N` for each N, then
    CPU per GB of one process as the order grows (10, 100, 1,000 images): flat is the goal.

    The upstream is nginx (bench/nginx.py), not the simulator: a Python upstream on the same two
    cores would be the bottleneck and hide what more service processes do."""
    with nginx(bench.work) as web:

        def published(count: int, each: int, name: str) -> str:
            order_id = bench.seed(count, each, name=name)
            order = httpx.get(f"{bench.sim.url}/v3/orders/{order_id}").raise_for_status().json()
            web.add_order(order, each)
            return order_id

        orders = [published(images, size, f"processes {i}") for i in range(callers)]
        case = f"8. processes ({callers} concurrent callers x {images}-image orders of {size / 1e6:g} MB images, from nginx)"
        rows: list[Row] = []
        first: tuple[float, float] | None = None
        for count in counts:
            with processes.service(web.url, bench.work / f"workers-{count}", log=bench.work / f"workers-{count}.log",
                                 cache_max_bytes=0, web_concurrency=count) as svc:
                _check_zip_once(f"{svc.url}/orders/{orders[0]}/images", bench.work / "workers.zip", images)  # warm-up
                before = svc.cpu_seconds()
                started = time.perf_counter()
                fetched = _concurrently(svc.url, orders, None)
                wall = time.perf_counter() - started
                cpu = svc.cpu_seconds() - before
            ok = [f for f in fetched if f.status == 200]
            gb = sum(f.size for f in ok) / 1e9
            mb_s = gb * 1e3 / wall
            p95 = statistics.quantiles([f.total for f in ok], n=100, method="inclusive")[94] if len(ok) > 1 else math.nan
            first = first or (mb_s, p95)
            rows.append(Row(case, f"{count} process{'es' if count > 1 else ''}: MB/s, p95, CPU s/GB",
                            f"{mb_s:.0f} MB/s, p95 {p95:.2f} s, {cpu / gb:.2f} CPU s/GB",
                            f"1 process: {first[0]:.0f} MB/s, p95 {first[1]:.2f} s",
                            f"{mb_s / first[0]:.2f}x throughput", "every caller 200", len(ok) == len(fetched)))
        per_gb: list[str] = []
        sized = [(count, published(count, 200_000, f"size {count}")) for count in (10, 100, 1000)]
        with processes.service(web.url, bench.work / "order-sizes", log=bench.work / "order-sizes.log",
                             cache_max_bytes=0) as svc:
            _check_zip_once(f"{svc.url}/orders/{sized[0][1]}/images", bench.work / "sizes.zip", 10)  # warm-up
            for count, order_id in sized:
                before = svc.cpu_seconds()
                fetch = _ok(processes.curl(f"{svc.url}/orders/{order_id}/images"))
                per_gb.append(f"{count}: {(svc.cpu_seconds() - before) / (fetch.size / 1e9):.2f}")
    rows.append(Row("8. order size (one process, 200 KB images from nginx)", "CPU s per GB by images in the order",
                    ", ".join(per_gb), "", "", "reported (flat is the goal)", None))
    return rows


CASES: dict[str, Callable[[Bench], list[Row]]] = {
    "latency": latency_bound,
    "throughput": throughput,
    "size": size,
    "fairness": fairness,
    "callers": many_callers,
    "repeat": repeat,
    "nginx": against_nginx,
    "processes": process_counts,
}
