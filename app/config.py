"""Every setting the service reads, in one typed place (documented in .env.example)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.network.trusted_hosts import split_entries
from app.core.upstream.client import DEFAULT_API_VERSION

DEMO_ORDER_ID = "7f3e9c1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c"
"""The fixed order id seeded into the embedded simulator in demo mode."""
DEMO_MAX_UPLOAD_PIXELS = 12_000_000
"""Demo uploads are decoded and rendered in this process by the simulator (a full-size RGB copy
and its enhanced twin each): 12 MP (a phone's photo) keeps one render near 100 MB."""


class Settings(BaseSettings):
    """Service configuration; read from the environment and an optional `.env` file."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    autoenhance_api_key: SecretStr | None = Field(
        default=None, description="Autoenhance API key. Unset: demo mode against the embedded simulator."
    )
    autoenhance_base_url: str = Field(
        default="https://api.autoenhance.ai", description="Upstream base URL; the client adds /v3/..."
    )
    autoenhance_api_version: str = Field(
        default=DEFAULT_API_VERSION,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="Autoenhance API version (YYYY-MM-DD) sent as x-api-version on every API call, so answers "
        "do not depend on the version the account was given when it joined.",
    )
    allowed_asset_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (`host` or `host:port`, comma separated) image downloads may be redirected to even "
        "over plain http or at a private address. Others: the API's own origin or public https only.",
    )
    max_concurrent_downloads: int = Field(default=5, ge=1, le=64, description="Downloads in flight per order.")
    max_global_downloads: int = Field(
        default=20,
        ge=1,
        le=1024,
        description="Downloads in flight across the whole box (all its WEB_CONCURRENCY processes), shared fairly.",
    )
    web_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes serving one DATA_DIR (`python -m app serve --workers N` sets it for its processes); "
        "each takes its share of MAX_GLOBAL_DOWNLOADS.",
    )
    image_timeout_seconds: float = Field(default=60.0, gt=0, description="Budget for one image, retries included.")
    order_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Budget for the order fetch, retries included."
    )
    retry_attempts: int = Field(default=4, ge=1, le=10, description="Attempts per upstream call (1 = no retry).")
    max_images_per_order: int = Field(default=5000, ge=1, description="Safety limit on images in one order.")
    max_image_bytes: int = Field(default=200 * 1024 * 1024, ge=1024, description="Largest single image accepted.")
    spool_memory_bytes: int = Field(
        default=4 * 1024 * 1024, ge=0, description="An image is held in memory up to this size, then spilled to disk."
    )
    spool_request_memory_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="The images one streamed archive or resume holds in memory together, at most; the rest wait on disk.",
    )
    spool_ahead_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="How far a streamed archive's downloads may run ahead of a reader that paused (images downloaded, "
        "not yet sent); past it they wait for the reader, holding no download slot. A reader that keeps taking images "
        "is run ahead of only as far as SPOOL_REQUEST_MEMORY_BYTES holds.",
    )
    stream_stall_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="An archive response whose reader takes no piece (up to 1 MiB) for this long is cut, and "
        "everything it held released.",
    )
    max_streams_per_caller: int = Field(
        default=4,
        ge=1,
        description="Archive downloads (GET of an order's images) one caller may have in flight on this "
        "instance; over it, 429.",
    )
    max_resumes_per_caller: int = Field(
        default=2,
        ge=1,
        description="Of those, resumes (a Range request) one caller may have in flight on this instance; over it, 429.",
    )
    data_dir: Path = Field(default=Path("data"), description="Cache, job results, job database, spool files.")
    share_secret: SecretStr | None = Field(
        default=None,
        description="Signs share links; unset: one is generated and kept under DATA_DIR. Every instance "
        "behind one address needs the same value.",
    )
    delivery_sets: Path | None = Field(
        default=None,
        description="A TOML or JSON file of extra delivery sets (listing-board presets); read at start.",
    )
    cache_ttl_seconds: int = Field(default=3600, ge=0, description="How long a cached archive is served. 0 disables.")
    cache_max_bytes: int = Field(default=2 * 1024**3, ge=0, description="Disk budget of the archive cache. 0 disables.")
    data_dir_max_bytes: int = Field(
        default=0, ge=0, description="Disk budget of all of DATA_DIR; beyond it new jobs answer 503. 0: no budget."
    )
    data_dir_min_free_bytes: int = Field(
        default=512 * 1024**2, ge=0, description="Free disk space kept; below it new jobs answer 503. 0: no floor."
    )
    job_ttl_seconds: int = Field(default=24 * 3600, ge=60, description="How long a finished job's ZIP is kept.")
    max_upload_files: int = Field(default=20, ge=1, description="Photos per create-order upload.")
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, description="Largest photo accepted for upload.")
    max_upload_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="Most pixels (width x height, read from the header before decoding) of an uploaded photo. "
        f"Demo mode caps it at {DEMO_MAX_UPLOAD_PIXELS:,}: its simulator decodes every upload in this process.",
    )
    demo_upload_store_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Demo mode: the embedded simulator keeps at most this many bytes of uploaded photos; the "
        "oldest uploads are dropped (their images then read `expired`).",
    )
    service_api_key: SecretStr | None = Field(
        default=None, description="When set, batch and job routes need this value in X-API-Key."
    )
    allow_anonymous_credits: bool = Field(
        default=False,
        description="Let callers without a valid X-API-Key ask for downloads that spend Autoenhance credits "
        "(preview=false, the mls set). Unset: only SERVICE_API_KEY holders may; previews and dev mode stay open.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Guards the credit-spending create-order routes (X-Admin-Token)."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics needs `Authorization: Bearer <token>` (Prometheus `authorization`). "
        "Unset: /metrics is open like /health.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CORS origins, comma separated."
    )
    sentry_dsn: SecretStr | None = Field(default=None, description="Sentry DSN; unset disables Sentry.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool | None = Field(
        default=None,
        description="JSON log lines (false: human-readable lines). Unset: plain lines for a person at a terminal, "
        "JSON otherwise (a pipe, a file, a log collector).",
    )

    @field_validator("log_json", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`LOG_JSON=` (as .env.example has it) means: decide by the terminal."""
        return None if isinstance(value, str) and not value.strip() else value
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OpenTelemetry collector base URL (OTLP/HTTP); unset disables tracing."
    )
    demo_latency_seconds: float = Field(default=0.0, ge=0, description="Per-download latency of the demo simulator.")
    public_base_url: str | None = Field(
        default=None,
        description="Absolute base URL callers reach this service at (webhook links); unset: the request's.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis for state shared between instances (webhook outbox, watches, rate limits); /ready checks it.",
    )
    redis_key_prefix: str = Field(default="autoenhance-batch:", min_length=1, description="Prefix of every Redis key.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signs job callbacks (Standard Webhooks); `whsec_<base64>` or raw text. Unset: no callbacks.",
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow callback URLs on loopback/private/link-local hosts (tests, trusted networks)."
    )
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, description="First retry delay; doubles each attempt.")
    webhook_retry_max_delay_seconds: float = Field(default=1800.0, gt=0, description="Longest delay between attempts.")
    webhook_retry_window_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="Callbacks are retried this long after the first attempt, then dropped."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Total time a callback attempt may take (connect, send, response head)."
    )
    autoenhance_webhook_token: SecretStr | None = Field(
        default=None,
        description="Authentication value Autoenhance sends to POST /webhooks/autoenhance. Unset: refused.",
    )
    min_global_downloads: int = Field(
        default=2, ge=1, description="Floor of the adaptive download budget (it shrinks on 429s and timeouts)."
    )
    breaker_threshold: int = Field(
        default=5, ge=1, description="Consecutive upstream failures (5xx, timeouts, refused) that open the breaker."
    )
    breaker_reset_seconds: float = Field(
        default=30.0, gt=0, description="How long the open breaker fails fast (503) before it half-opens to probe."
    )
    rate_limit: str = Field(
        default="120/minute",
        description="Inbound limit per caller (X-API-Key, else client address), e.g. '120/minute;10/second'. "
        "Empty disables.",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of the service that append to X-Forwarded-For (1 behind one load balancer). "
        "The caller (rate limits, logs) is then the address the outermost of them saw. 0: the socket peer.",
    )

    body_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="A request body must keep arriving: after this grace it must average MIN_BODY_RATE "
        "(8 KiB/s), and no wait for its next piece may last longer; else 408.",
    )
    max_upstream_json_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest Autoenhance JSON answer accepted, counted after decompression (a gzip bomb stops here).",
    )

    job_workers_in_api: bool = Field(
        default=True,
        description="With REDIS_URL, API processes also run queued jobs; false when only `python -m app.worker` does.",
    )
    job_lease_seconds: float = Field(
        default=30.0, ge=1, description="A running job's heartbeat lease; a runner silent this long is presumed dead."
    )
    job_max_attempts: int = Field(
        default=2, ge=1, le=10, description="Runs of a job whose worker died before it fails with a reason."
    )
    s3_bucket: str | None = Field(default=None, description="Job results in this S3-compatible bucket (unset: disk).")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, R2, ...); unset: AWS.")
    s3_region: str | None = Field(default=None, description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(default=None, description="S3 access key id (unset: environment).")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    s3_prefix: str = Field(default="jobs/", description="Key prefix of job results in the bucket.")
    s3_url_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600, description="Life of presigned download URLs.")
    shared_budget: bool = Field(
        default=True,
        description="With REDIS_URL, MAX_GLOBAL_DOWNLOADS holds across all instances together (Redis slot leases).",
    )

    @field_validator("allowed_origins", "allowed_asset_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # the command line's direct mode reads ALLOWED_ASSET_HOSTS without Settings, by this same rule
        return split_entries(value) if isinstance(value, str) else value

    @field_validator(
        "autoenhance_api_key",
        "service_api_key",
        "admin_token",
        "metrics_token",
        "sentry_dsn",
        "redis_url",
        "webhook_secret",
        "autoenhance_webhook_token",
        "public_base_url",
        "otel_exporter_otlp_endpoint",
        "s3_bucket",
        "s3_endpoint_url",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        "share_secret",
        "delivery_sets",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("autoenhance_api_version", mode="before")
    @classmethod
    def _blank_version_is_the_pinned_one(cls, value: object) -> object:
        """`AUTOENHANCE_API_VERSION=` means the pinned version, as the command line's direct mode reads it."""
        return DEFAULT_API_VERSION if isinstance(value, str) and not value.strip() else value

    @property
    def demo_mode(self) -> bool:
        """No API key: serve the embedded simulator and its demo order instead of the real API."""
        return self.autoenhance_api_key is None

    @property
    def upload_pixel_limit(self) -> int:
        """MAX_UPLOAD_PIXELS, capped in demo mode (see DEMO_MAX_UPLOAD_PIXELS)."""
        return min(self.max_upload_pixels, DEMO_MAX_UPLOAD_PIXELS) if self.demo_mode else self.max_upload_pixels

    @property
    def process_downloads(self) -> tuple[int, int]:
        """This process's share of the box's download budget: (most, floor), each at least 1."""
        share = -(-self.max_global_downloads // self.web_concurrency)
        return share, max(1, min(share, -(-self.min_global_downloads // self.web_concurrency)))

    @cached_property
    def spool_dir(self) -> Path:
        """This process's own spool folder (`spool/<pid>`): processes sharing a data_dir clear only their own."""
        return self.data_dir / "spool" / str(os.getpid())

    @cached_property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @cached_property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
