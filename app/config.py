"""Every setting the service reads, in one typed place (documented in .env.example)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEMO_ORDER_ID = "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c"
"""The fixed order id seeded into the embedded simulator in demo mode."""


class Settings(BaseSettings):
    """Service configuration; read from the environment and an optional `.env` file."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    autoenhance_api_key: SecretStr | None = Field(
        default=None, description="Autoenhance API key. Unset: demo mode against the embedded simulator."
    )
    autoenhance_base_url: str = Field(
        default="https://api.autoenhance.ai", description="Upstream base URL; the client adds /v3/..."
    )
    max_concurrent_downloads: int = Field(default=5, ge=1, le=64, description="Downloads in flight per order.")
    max_global_downloads: int = Field(
        default=20, ge=1, le=1024, description="Downloads in flight across the whole process, shared fairly."
    )
    image_timeout_seconds: float = Field(default=60.0, gt=0, description="Budget for one image, retries included.")
    order_timeout_seconds: float = Field(default=30.0, gt=0, description="Budget for the order fetch, retries included.")
    retry_attempts: int = Field(default=4, ge=1, le=10, description="Attempts per upstream call (1 = no retry).")
    max_images_per_order: int = Field(default=5000, ge=1, description="Safety limit on images in one order.")
    max_image_bytes: int = Field(default=200 * 1024 * 1024, ge=1024, description="Largest single image accepted.")
    spool_memory_bytes: int = Field(
        default=4 * 1024 * 1024, ge=0, description="An image is held in memory up to this size, then spilled to disk."
    )
    data_dir: Path = Field(default=Path("data"), description="Cache, job results, job database, spool files.")
    cache_ttl_seconds: int = Field(default=3600, ge=0, description="How long a cached archive is served. 0 disables.")
    cache_max_bytes: int = Field(default=2 * 1024**3, ge=0, description="Disk budget of the archive cache. 0 disables.")
    job_ttl_seconds: int = Field(default=24 * 3600, ge=60, description="How long a finished job's ZIP is kept.")
    max_upload_files: int = Field(default=20, ge=1, description="Photos per create-order upload.")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="Largest photo accepted for upload.")
    service_api_key: SecretStr | None = Field(
        default=None, description="When set, batch and job routes need this value in X-API-Key."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Guards the credit-spending create-order routes (X-Admin-Token)."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="CORS origins, comma separated.")
    sentry_dsn: SecretStr | None = Field(default=None, description="Sentry DSN; unset disables Sentry.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(default=True, description="JSON log lines (false: human-readable console lines).")
    demo_latency_seconds: float = Field(default=0.0, ge=0, description="Per-download latency of the demo simulator.")

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("autoenhance_api_key", "service_api_key", "admin_token", "sentry_dsn", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def demo_mode(self) -> bool:
        """No API key: serve the embedded simulator and its demo order instead of the real API."""
        return self.autoenhance_api_key is None

    @cached_property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @cached_property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @cached_property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
