"""The CLI run in the test's own process, the developer's AUTOENHANCE_*, ADMIN_TOKEN and ALLOWED_ASSET_HOSTS
settings blanked; or as its own process (`run_process`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from app.cli.main import cli

CLEAN_ENV = {
    "AUTOENHANCE_BATCH_URL": "",
    "AUTOENHANCE_BATCH_KEY": "",
    "AUTOENHANCE_API_KEY": "",
    "AUTOENHANCE_BASE_URL": "",
    "AUTOENHANCE_API_VERSION": "",
    "ADMIN_TOKEN": "",
    "ALLOWED_ASSET_HOSTS": "",
    "COLUMNS": "120",
}


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Invoke the CLI in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args), env=CLEAN_ENV | (env or {}))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, " ".join(result.stderr.split())  # rich wraps long lines


ROOT = Path(__file__).resolve().parents[2]


def run_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 180
) -> tuple[int, str, str]:
    """The real command (`python -m app`) as its own process, stdin closed (not a terminal);
    (exit code, stdout, stderr with rich's wrapping undone)."""
    full_env = os.environ | CLEAN_ENV | (env or {})
    result = subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd or ROOT, env=full_env | {"PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )
    return result.returncode, result.stdout, " ".join(result.stderr.split())


def run_in_terminal(
    *args: str, answer: str | None, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """The real command on a pseudo-terminal (stdin, stdout and stderr), as a person runs it.

    When the output shows `[y/N]`, `answer` is typed (None: the test expects no question). Returns
    (exit code, everything the terminal showed, with rich's wrapping undone)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    full_env = os.environ | CLEAN_ENV | {"PYTHONPATH": str(ROOT), "TERM": "xterm"} | (env or {})
    process = subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=full_env, stdin=slave,
                               stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    shown, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if not answered and b"[y/N]" in shown:
                assert answer is not None, shown.decode(errors="replace")
                os.write(master, answer.encode() + b"\r")
                answered = True
            if process.poll() is not None and not ready:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, " ".join(shown.decode(errors="replace").split())
