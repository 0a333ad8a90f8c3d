"""The physical reference: Debian's nginx as the upstream, curl as the client.

A Python client is itself a ceiling, so the byte path is also measured against C on both ends:
nginx serves, from a temporary folder, what Autoenhance and its asset storage would serve,

    GET /v3/orders/{id}              the order JSON (a file)
    GET /v3/images/{id}/enhanced     302 to /assets/{id}.jpg (as the API sends S3 links)
    GET /assets/{id}.jpg             the bytes (sendfile)

and `curl --parallel --parallel-max 5` fetching every image straight from it is the limit. The
service is then pointed at the same nginx (AUTOENHANCE_BASE_URL) and measured in the same run.

`proxy()` starts a second nginx as a reverse proxy in front of the first (one worker, as the
service is one process; buffered, keep-alive upstream): what C itself reaches when every byte must
pass through a middle process on this machine, the fairest yardstick for a service that must.
`make system-deps` (which `make bench` runs first) installs nginx; without it these cases cannot run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.processes import Fetch, free_port, wait_http

PREAMBLE = """
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
"""
"""One worker (as the service is one process), temporary files inside the run's folder; `http {` left open."""

CONF = PREAMBLE + """
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ image/jpeg jpg; application/zip zip; application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        absolute_redirect off;
        location ~ ^/v3/orders/([^/]+)$ {{ default_type application/json; try_files /orders/$1.json =404; }}
        location ~ ^/v3/images/([^/]+)/enhanced$ {{ return 302 /assets/$1.jpg; }}
        location /assets/ {{ }}
        location /files/ {{ }}
    }}
}}
"""


def binary() -> str | None:
    """nginx's path (Debian installs it in /usr/sbin, often outside a user's PATH)."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@dataclass
class Nginx:
    url: str
    root: Path
    pid: int

    def add_order(self, order: dict[str, object], size: int) -> list[str]:
        """Publish `order` (the simulator's JSON for it) and a `size`-byte asset per image; the image ids."""
        ids = [str(image["image_id"]) for image in order["images"]]  # type: ignore[attr-defined]
        (self.root / "www" / "orders" / f"{order['order_id']}.json").write_text(json.dumps(order))
        block = os.urandom(size)
        for n, image_id in enumerate(ids):
            # distinct bytes per image (a different CRC each), written without generating 200 MB anew
            (self.root / "www" / "assets" / f"{image_id}.jpg").write_bytes(n.to_bytes(8, "big") + block[8:])
        return ids

    def add_file(self, source: Path) -> str:
        """Serve a copy of `source` (a cached archive) as a static file; its URL."""
        shutil.copyfile(source, self.root / "www" / "files" / source.name)
        return f"{self.url}/files/{source.name}"


PROXY_CONF = PREAMBLE + """
    upstream origin {{ server {upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 256k;
            proxy_buffers 16 256k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(work: Path) -> Iterator[Nginx]:
    """nginx serving the order, the redirects and the assets from `work`/nginx/www."""
    root = work / "nginx"
    for sub in ("www/orders", "www/assets", "www/files"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with _running(root, CONF, "/files/") as (url, pid):
        yield Nginx(url, root, pid)


@dataclass
class Proxy:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU of the proxy's master and its worker so far (the worker does the copying)."""
        import psutil

        master = psutil.Process(self.pid)
        total = 0.0
        for process in (master, *master.children(recursive=True)):
            times = process.cpu_times()
            total += times.user + times.system
        return total


@contextlib.contextmanager
def proxy(work: Path, upstream_url: str) -> Iterator[Proxy]:
    """nginx as a reverse proxy in front of `upstream_url`."""
    upstream = upstream_url.removeprefix("http://")
    with _running(work / "nginx-proxy", PROXY_CONF, "/v3/", upstream=upstream) as (url, pid):
        yield Proxy(url, pid)


FORWARDING_CONF = PREAMBLE + """
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


@contextlib.contextmanager
def forwarding_proxy(work: Path, upstream_url: str) -> Iterator[str]:
    """nginx as a load balancer in front of `upstream_url`, appending the address it was reached from
    to X-Forwarded-For (as hosted load balancers do); its URL."""
    upstream = upstream_url.removeprefix("http://")
    with _running(work / "nginx-forwarding", FORWARDING_CONF, "/health", upstream=upstream) as (url, _):
        yield url


@contextlib.contextmanager
def _running(root: Path, conf: str, probe: str, **values: str) -> Iterator[tuple[str, int]]:
    exe = binary()
    if exe is None:
        raise FileNotFoundError("nginx is not installed (run `make system-deps`)")
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # Started as root, nginx's worker would run as `nobody`, which cannot enter private temp folders.
    user = "user root root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(conf.format(root=root, port=port, user=user, **values))
    popen = subprocess.Popen([exe, "-c", str(root / "nginx.conf"), "-p", str(root), "-e", str(root / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + probe, proc=popen)
        yield url, popen.pid
    finally:
        popen.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def curl_parallel(urls: list[str], parallel: int = 5) -> Fetch:
    """Every URL with curl --parallel (following redirects, bodies discarded): the C client's limit."""
    lines = [f'url = "{url}"\noutput = "/dev/null"\n' for url in urls]
    config = "".join(lines)
    args = ["curl", "-sS", "-L", "--parallel", "--parallel-max", str(parallel), "--config", "-",
            "-w", "%{http_code} %{size_download}\n"]
    started = time.perf_counter()
    done = subprocess.run(args, input=config, capture_output=True, text=True, check=True)
    total = time.perf_counter() - started
    results = [line.split() for line in done.stdout.strip().splitlines()]
    bad = [r for r in results if r[0] != "200"]
    if len(results) != len(urls) or bad:
        raise RuntimeError(f"curl --parallel: {len(results)} transfers, {len(bad)} not 200")
    size = sum(int(r[1]) for r in results)
    return Fetch(200, size, 0.0, total)
