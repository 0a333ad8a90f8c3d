"""The S3-compatible bucket of S3_BUCKET, shared by the job results and the shared archive cache."""

from __future__ import annotations

from typing import Protocol

from obstore.store import S3Store
from pydantic import SecretStr


class S3Settings(Protocol):
    """The bucket's settings (app.config.Settings has them); a protocol, so storage sits below config."""

    s3_bucket: str | None
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_access_key_id: SecretStr | None
    s3_secret_access_key: SecretStr | None


def s3_store(settings: S3Settings) -> S3Store:
    """The bucket of S3_BUCKET with the endpoint/region/credentials settings (unset ones: obstore's
    usual AWS environment and instance-profile lookup)."""
    config: dict[str, str] = {}
    if settings.s3_endpoint_url:
        config["endpoint"] = settings.s3_endpoint_url
    if settings.s3_region:
        config["region"] = settings.s3_region
    if settings.s3_access_key_id is not None:
        config["access_key_id"] = settings.s3_access_key_id.get_secret_value()
    if settings.s3_secret_access_key is not None:
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    allow_http = bool(settings.s3_endpoint_url and settings.s3_endpoint_url.startswith("http://"))
    return S3Store(settings.s3_bucket, config=config, client_options={"allow_http": allow_http})  # type: ignore[arg-type]
