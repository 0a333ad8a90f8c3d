"""A private `redis-server` on a free loopback port, for tests that restart Redis, cut its
connections or fill its memory: the machine's shared Redis (tests/support/cluster.py) is never
disturbed. Skipped when no redis-server binary is installed, except under CI=true (fails)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.servers import free_port


class RedisServer:
    """One redis-server process; `restart()` keeps its data (saved on shutdown, loaded on start)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(self.directory), "--dbfilename", "dump.rdb", *self.extra]
        log = open(self.directory / f"redis-{self.starts}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.starts += 1
        with log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                with self.client() as client:
                    if client.ping():
                        return self
            except (redis.BusyLoadingError, redis.ConnectionError):
                pass
            assert self.process.poll() is None, (self.directory / f"redis-{self.starts - 1}.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer within 15 s"
            time.sleep(0.02)

    def stop(self, *, save: bool = False) -> None:
        """SHUTDOWN (SAVE: the data is written to dump.rdb and loaded by the next start)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(redis.ConnectionError), self.client() as client:
            client.shutdown(save=save, nosave=not save)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def restart(self) -> None:
        """A Redis restart as a deploy or failover does it: every connection drops, the data stays."""
        self.stop(save=True)
        self.start()

    def kill_clients(self) -> int:
        """Close every normal client connection (CLIENT KILL TYPE normal, not this one); how many."""
        with self.client() as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))


def redis_server_binary_or_skip() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no redis-server binary is installed")
        pytest.skip("no redis-server binary: install redis-server to run the Redis restart tests")


@contextlib.contextmanager
def private_redis(directory: Path, *extra: str) -> Iterator[RedisServer]:
    """A started private redis-server (extra arguments such as `--maxmemory 2mb`), stopped afterwards."""
    redis_server_binary_or_skip()
    server = RedisServer(directory, *extra).start()
    try:
        yield server
    finally:
        server.stop()
