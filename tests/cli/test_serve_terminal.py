"""`autoenhance-batch serve` for a person at a terminal: plain lines (JSON only when not a terminal),
where it listens and where its data folder is, no `data/` made in the folder it runs from, and a
taken port said plainly."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.ops.logs import CONTEXT_KEYS
from harness.servers import free_port
from tests.support.cli_runner import CLEAN_ENV, ROOT


def serve_env(tmp_path: Path) -> dict[str, str]:
    env = os.environ | CLEAN_ENV | {"PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg"), "TERM": "xterm",
                                             "LOG_LEVEL": "INFO"}
    for name in ("DATA_DIR", "LOG_JSON", "AUTOENHANCE_API_KEY"):
        env.pop(name, None)
    return env


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "serve exited"
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)


def test_serve_at_a_terminal_prints_plain_lines_its_address_and_its_data_folder(tmp_path: Path) -> None:
    port = free_port()
    workdir = tmp_path / "somewhere"
    workdir.mkdir()
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=workdir,
                               env=serve_env(tmp_path), stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    shown = b""
    try:
        wait_healthy(port, process)
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        deadline = time.monotonic() + 10
        while b"/health" not in shown and time.monotonic() < deadline:  # the access line of our request
            if select.select([master], [], [], 0.5)[0]:
                try:
                    shown += os.read(master, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode(errors="replace"))  # the terminal's bold, not data
    flat = " ".join(text.split())
    assert f"Autoenhance Batch on http://127.0.0.1:{port}/" in flat and "mode: demo" in flat
    assert f"Data folder: {tmp_path / 'xdg' / 'autoenhance-batch'}" in flat
    assert not (workdir / "data").exists()  # nothing made in the folder it was started from
    assert (tmp_path / "xdg" / "autoenhance-batch").is_dir()
    lines = [line for line in text.splitlines() if line.strip()]
    assert any("Application startup complete" in line for line in lines)
    assert not any(line.lstrip().startswith('{"') for line in lines), text  # no JSON for a person
    assert "color_message" not in text and "=None" not in text, text  # uvicorn's coloured copy, empty context


def test_serve_without_a_terminal_logs_json(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=tmp_path,
                               env=serve_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_healthy(port, process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert any(r.get("event", "").startswith("Application startup complete") for r in records)
    assert not [r for r in records if "color_message" in r]  # one message per line, without ANSI codes
    assert all(set(CONTEXT_KEYS) <= r.keys() for r in records)  # JSON keeps them all, null when unknown


def test_a_taken_port_is_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=tmp_path,
                                env=serve_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=90)
    flat = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in flat and "--port" in flat
    assert "{" not in flat and "Traceback" not in flat
