"""A small cluster on loopback for the scale-out tests: real Redis, a local S3 (moto_server),
`uvicorn app:app` API instances and `python -m app.worker` processes, each in its own process, all
sharing one Redis key prefix."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.config import Settings
from harness.processes import wait_http
from harness.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent


def redis_or_skip() -> str:
    """The Redis URL, after checking it answers; skipped if none does, except under CI=true (fails)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but no Redis answers at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis answers at {REDIS_URL} ({exc}); set REDIS_URL or start redis-server")
    return REDIS_URL


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; its keys (and only its keys) are deleted afterwards."""
    url = redis_or_skip()
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@dataclass
class S3:
    endpoint: str
    bucket: str

    def settings(self) -> dict[str, Any]:
        return {
            "s3_bucket": self.bucket,
            "s3_endpoint_url": self.endpoint,
            "s3_region": "us-east-1",
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
        }


@contextlib.contextmanager
def moto_s3(log_dir: Path) -> Iterator[S3]:
    """moto's S3 server on a free loopback port, with one bucket."""
    port = free_port()
    with open(log_dir / "moto.log", "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            endpoint = f"http://127.0.0.1:{port}"
            wait_http(endpoint, proc=process)
            bucket = f"jobs-{uuid.uuid4().hex[:8]}"
            assert httpx.put(f"{endpoint}/{bucket}").status_code == 200  # moto creates buckets unauthenticated
            yield S3(endpoint, bucket)
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class Node:
    """One of the cluster's own processes, configured only through `env`, logging under `cwd`."""

    env: dict[str, str]
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def spawn(self, command: list[str]) -> None:
        log = self.cwd / f"{type(self).__name__.lower()}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs if log.exists())


@dataclass
class Worker(Node):
    """`python -m app.worker` (so a test can SIGKILL it)."""

    def start(self) -> Worker:
        self.spawn([sys.executable, "-m", "app.worker"])
        return self


@dataclass
class Api(Node):
    """`uvicorn app:app`, as operators run an instance behind a load balancer."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Api:
        self.spawn([str(BIN / "uvicorn"), "app:app", "--host", "127.0.0.1", "--port", str(self.port)])
        wait_http(f"{self.url}/health", timeout=timeout, proc=self.process)
        return self


@dataclass
class Served(Api):
    """`python -m app serve` (the documented start command), with `workers` processes on its port."""

    workers: int = 1

    def start(self) -> Served:
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.spawn([*command, "--workers", str(self.workers)])
        wait_http(f"{self.url}/health", proc=self.process)
        return self


def node_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment of a service or worker process: these settings and nothing else of ours.

    Every variable the service reads is dropped from the inherited environment (a developer's
    SERVICE_API_KEY or OTEL endpoint must not leak in), and the cwd is a tmp dir, so no .env applies.
    """
    ours = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    for name, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            env[name.upper()] = str(value).lower()
        elif isinstance(value, (list, dict)):
            env[name.upper()] = json.dumps(value)
        else:
            env[name.upper()] = str(value)
    return env
