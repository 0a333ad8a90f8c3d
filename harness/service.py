"""The service's settings for a test or a benchmark run against a simulator: quick timeouts, no
secrets, nothing read from a developer's .env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings

TEST_KEY = "test-upstream-key"
"""The upstream key the simulators of the tests accept."""


def service_settings(sim_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "autoenhance_api_key": TEST_KEY,
        "autoenhance_base_url": sim_url,
        "data_dir": data_dir,
        "image_timeout_seconds": 10,
        "order_timeout_seconds": 10,
        "retry_attempts": 3,
        "service_api_key": None,
        "admin_token": None,
        "sentry_dsn": None,
        "allowed_origins": [],
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
