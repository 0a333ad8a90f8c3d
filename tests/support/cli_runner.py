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
