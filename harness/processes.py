"""Start the simulator and the service as real processes (uvicorn, one worker, as users run them).

Shared by the benchmarks and by the tests that must measure a separate process (memory).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
SIM_KEY = "bench-key"


_PORTS_FROM, _PORTS_TO = 20000, 32768
_port_cycle: Iterator[int] | None = None


def _port_block() -> range:
    """This process's own ports: one block per pytest-xdist worker (gw0, gw1, ...), one for everyone else."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = (_PORTS_TO - _PORTS_FROM) // (workers + 1)
    return range(_PORTS_FROM + index * size, _PORTS_FROM + (index + 1) * size)


def free_port() -> int:
    """A loopback port for a server another process (or a later call) will bind.

    A port the kernel hands out (bind to 0) is free only until it is closed: a client's source port
    or a parallel test worker can take it before the server binds it. So ports come from below the
    kernel's ephemeral range (32768 and up on Linux), from a block of this process's own, in turn,
    each checked free before it is handed out.
    """
    global _port_cycle
    if _port_cycle is None:  # from a point of the block that depends on the pid: two processes given the
        block = _port_block()  # same block (two suites, or a bench beside a suite) do not walk it in step
        start = (os.getpid() * 7919) % len(block)
        _port_cycle = itertools.cycle([*block[start:], *block[:start]])
    for _ in range(len(_port_block())):
        port = next(_port_cycle)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port in this process's block")


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers below 500; a process started beside busy parallel test workers may take a while to import."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


@dataclass
class Proc:
    url: str
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its children (`serve --workers N` serves from children)."""
        main = psutil.Process(self.pid)
        total = 0.0
        for process in (main, *main.children(recursive=True)):
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far: system is mostly the kernel copying socket bytes."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user), float(times.system)


@contextlib.contextmanager
def _process(cmd: list[str], url: str, health: str, env: dict[str, str], log: Path | None) -> Iterator[Proc]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(url + health, proc=popen)
        yield Proc(url, popen)
    finally:
        popen.send_signal(signal.SIGINT)
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def simulator(*args: str, log: Path | None = None) -> Iterator[Proc]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "simulator", "--port", str(port), "--api-key", SIM_KEY, "--log-level", "warning", *args]
    with _process(cmd, url, "/_simulator/stats", os.environ.copy(), log) as proc:
        yield proc


@contextlib.contextmanager
def service(upstream: str, data_dir: Path, log: Path | None = None, **settings: Any) -> Iterator[Proc]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENHANCE_", "SERVICE_API_KEY", "ADMIN_TOKEN"))}
    env |= {"AUTOENHANCE_API_KEY": SIM_KEY, "AUTOENHANCE_BASE_URL": upstream, "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING"}
    # every benchmark caller comes from 127.0.0.1 (and the soak's share one key), yet stands for another
    # person: the per-caller caps on downloads in flight would make them one caller
    env |= {"MAX_STREAMS_PER_CALLER": "10000", "MAX_RESUMES_PER_CALLER": "10000"}
    env |= {k.upper(): str(v) for k, v in settings.items()}
    # as `make run` starts it: uvloop, httptools with the head limits of app/server.py
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with _process(cmd, url, "/health", env, log) as proc:
        yield proc


@contextlib.contextmanager
def naive(upstream: str, log: Path | None = None) -> Iterator[Proc]:
    """The seed-001 baseline (bench/naive.py) as its own uvicorn process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "bench.naive", "--port", str(port), "--upstream", upstream, "--api-key", SIM_KEY]
    with _process(cmd, url, "/", os.environ.copy(), log) as proc:
        yield proc


@contextlib.contextmanager
def static(root: Path, log: Path | None = None) -> Iterator[Proc]:
    """A plain static-file server (bench/static.py) over `root`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "bench.static", "--port", str(port), "--root", str(root)]
    with _process(cmd, url, "/", os.environ.copy(), log) as proc:
        yield proc


@dataclass
class Fetch:
    """One HTTP download as curl saw it (C client: its own cost stays out of our figures)."""

    status: int
    size: int
    ttfb: float
    total: float

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.total if self.total else 0.0


def curl(url: str, output: str = "/dev/null", headers: dict[str, str] | None = None) -> Fetch:
    """GET `url` with curl, body to `output`; raises if curl itself fails (not on HTTP errors)."""
    args = ["curl", "-sS", "-o", output, "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run([*args, url], capture_output=True, text=True, check=True)
    status, size, ttfb, total = done.stdout.split()
    return Fetch(int(status), int(size), float(ttfb), float(total))


def seed(sim_url: str, count: int, size: int, name: str = "Bench order", **extra: Any) -> str:
    images = [{"name": f"photo-{i:04d}.jpg", "size": size} | extra for i in range(count)]
    response = httpx.post(f"{sim_url}/_simulator/orders", json={"name": name, "images": images}, timeout=60)
    response.raise_for_status()
    return str(response.json()["order_id"])


class RssSampler:
    """Samples a process's RSS in the background; `peak` is the highest seen."""

    def __init__(self, proc: Proc, interval: float = 0.02) -> None:
        import threading

        self._proc = proc
        self._interval = interval
        self._stop = threading.Event()
        self.peak = proc.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.rss())
            time.sleep(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stream_to_nowhere(url: str, params: dict[str, Any] | None = None) -> tuple[int, bytes, float, float]:
    """Download `url`, keeping only the last 64 KiB; returns (bytes, tail, ttfb, total seconds)."""
    started = time.perf_counter()
    ttfb = 0.0
    total = 0
    tail = b""
    with httpx.stream("GET", url, params=params, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1024 * 1024):
            if not total:
                ttfb = time.perf_counter() - started
            total += len(chunk)
            tail = (tail + chunk)[-65536:]
    return total, tail, ttfb, time.perf_counter() - started
