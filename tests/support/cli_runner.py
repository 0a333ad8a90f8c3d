"""The CLI run in the test's own process, the developer's AUTOENHANCE_*, ADMIN_TOKEN and ALLOWED_ASSET_HOSTS
settings blanked."""

from __future__ import annotations

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
