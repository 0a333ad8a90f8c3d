"""One way to serve: every start command the docs, render.yaml and the Makefile give holds the head limits.

The commands are read from where a reader finds them (README.md and docs/, code blocks and inline
code; the start commands of render.yaml's web services; the Makefile targets that serve), so a new
way to start the service cannot be documented without passing here. Each one is started as a real
process on a free port and must answer an oversized request head with 431 and cut a connection
whose head arrives too slowly (app/server.py). uvicorn started on its own does neither: its parser
takes a head of any size and it runs no timer until a head is complete.

Environment assignments in front of a documented command (`AUTOENHANCE_API_KEY=... make run`) are
dropped: they configure the application, not the server; each process runs in demo mode on its
own DATA_DIR.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.server import HEADER_TIMEOUT_SECONDS, MAX_HEADER_BYTES
from harness import raw_http
from harness.processes import wait_http
from harness.servers import free_port
from tests.support.cluster import node_env

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
SERVERS = {"uvicorn", "gunicorn", "hypercorn", "granian", "daphne"}


def _is_start(argv: list[str]) -> bool:
    """Does this command line start the HTTP service?"""
    if not argv:
        return False
    program = Path(argv[0]).name
    if program == "make":
        return "run" in argv[1:]
    if program in SERVERS or argv[:2] == ["fastapi", "run"]:
        return True
    if program == "autoenhance-batch":
        return argv[1:2] == ["serve"]
    if re.fullmatch(r"python[0-9.]*", program) and argv[1:2] == ["-m"]:
        return argv[2:4] == ["app", "serve"] or argv[2:3] == ["uvicorn"]
    return False


def _command(line: str) -> list[str] | None:
    """The argv of a shell line, without leading VAR=value assignments, if it starts the service."""
    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return None
    while argv and ASSIGNMENT.match(argv[0]):
        argv.pop(0)
    return argv if _is_start(argv) else None


def _shell_lines(text: str) -> Iterator[str]:
    for block in FENCE.finditer(text):
        yield from block.group(2).replace("\\\n", " ").splitlines()
    yield from INLINE.findall(FENCE.sub("", text))


def documented_commands() -> dict[str, list[str]]:
    """Every place that gives a start command -> its argv."""
    found: dict[str, list[str]] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line in _shell_lines(doc.read_text()):
            if (argv := _command(line)) is not None:
                found[f"{doc.relative_to(ROOT)}: {shlex.join(argv)}"] = argv
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    for service in blueprint["services"]:
        if service.get("type") == "web":
            argv = _command(service["startCommand"])
            assert argv is not None, f"render.yaml's web service starts with {service['startCommand']!r}"
            found[f"render.yaml {service['name']}: {service['startCommand']}"] = argv
    for target, recipe in _make_targets().items():
        if any(_command(line.replace("$(BIN)/", "")) for line in recipe):
            found[f"Makefile: make {target}"] = ["make", target]
    return found


def distinct_commands() -> dict[str, tuple[list[str], list[str]]]:
    """One entry per command that differs once put on a free port (`--port 8000` in one place and
    `--port $PORT` in another start the same server): its name -> (argv with PORT, where given)."""
    by_form: dict[tuple[str, ...], list[str]] = {}
    for where, argv in documented_commands().items():
        by_form.setdefault(tuple(_runnable(argv, PORT)), []).append(where)
    return {
        shlex.join(["python" if arg == sys.executable else arg for arg in form if arg not in LOOPBACK]): (list(form), wheres)
        for form, wheres in by_form.items()
    }


def _make_targets() -> dict[str, list[str]]:
    targets: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
        elif match := re.match(r"^([a-z][a-z0-9_-]*)\s*:(?!=)", line):
            current = targets.setdefault(match.group(1), [])
        elif line.strip() and not line.startswith("#"):
            current = None
    return targets


PORT = "<free port>"
LOOPBACK = ("-s", "--host", "127.0.0.1", "HOST=127.0.0.1", "--port", PORT, f"PORT={PORT}")


def _runnable(argv: list[str], port: str) -> list[str]:
    """The documented command, on a free loopback port, with this interpreter standing in for `python`."""
    if Path(argv[0]).name == "make":
        return ["make", "-s", *argv[1:], "HOST=127.0.0.1", f"PORT={port}"]
    program = Path(argv[0]).name
    if program == "autoenhance-batch":  # [project.scripts]: the same entry point as `python -m app`
        argv = ["python", "-m", "app", *argv[1:]]
    elif program in SERVERS:
        argv = ["python", "-m", program, *argv[1:]]
    args, out, skip = argv[1:], [sys.executable], False
    for n, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in ("--port", "--host", "-p"):
            skip = True
            continue
        if arg.startswith(("--port=", "--host=")):
            continue
        out.append(args[n])
    return [*out, "--host", "127.0.0.1", "--port", str(port)]


COMMANDS = distinct_commands()


def test_the_start_commands_are_found_where_readers_look() -> None:
    documented = documented_commands()
    sources = {where.split(":", 1)[0].split(" ", 1)[0] for where in documented}
    assert {"README.md", "render.yaml", "Makefile"} <= sources, documented
    assert documented["Makefile: make run"] == ["make", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["autoenhance-batch"] == "app.cli.main:main"  # what `python -m app` runs (app/__main__.py)
    assert "from app.cli.main import main" in (ROOT / "app" / "__main__.py").read_text()


def test_the_parser_knows_a_start_command_from_anything_else() -> None:
    assert _command("AUTOENHANCE_API_KEY=ak_... make run") == ["make", "run"]
    assert _command("JOB_WORKERS_IN_API=false uvicorn app:app --port 8000  # each API instance") is not None
    assert _command("python -m app serve --host 0.0.0.0 --port $PORT") is not None
    assert _command("autoenhance-batch serve --port 8000") is not None
    for other in ("make test", "python -m app.worker", ".venv/bin/python -m simulator --port 9000",
                  "autoenhance-batch download x", "curl http://localhost:8000/health"):
        assert _command(other) is None, other


def _cut_within(sock: socket.socket, seconds: float) -> bool:
    """Trickle a header line every second, never ending the head: True once the server closes."""
    deadline = time.monotonic() + seconds
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"X-Slow: 1\r\n")
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


@pytest.mark.heavy
@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_every_documented_start_command_holds_the_head_limits(where: str, tmp_path: Path) -> None:
    """`where` names the command; `wheres` every place that gives it."""
    form, wheres = COMMANDS[where]
    if form[0] == "make" and not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("make run serves from .venv: run `make install` first")
    port = free_port()
    command = [arg.replace(PORT, str(port)) for arg in form]
    env = node_env({"data_dir": tmp_path / "data", "autoenhance_api_key": "", "log_level": "WARNING"})
    process = subprocess.Popen(
        command, cwd=ROOT if form[0] == "make" else tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc=process)
        huge = raw_http.request(url, "GET", "/health", {"X-Pad": "a" * (16 * MAX_HEADER_BYTES)}, timeout=10)
        assert huge.status == 431, f"{wheres}: an oversized head got {huge.status}"
        with raw_http.connect(url) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert _cut_within(slow, HEADER_TIMEOUT_SECONDS + 5), f"{wheres}: a slow head was never cut"
            assert time.monotonic() - started >= HEADER_TIMEOUT_SECONDS - 1  # the deadline, not an error
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the process group this test started (make and its child)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        if process.stderr:
            process.stderr.close()
