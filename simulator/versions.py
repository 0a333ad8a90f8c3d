"""Which Autoenhance API version a request is served, and what each version changes in an answer.

Autoenhance gives each account the version current when it joined; `x-api-version: YYYY-MM-DD`
overrides it per request (documented). The simulator's account version is `SimulatorState.api_version`
(constructor, `--api-version`, or PUT /_simulator/config); None is a lenient account that answers
every version's upload-URL key at once, as the simulator always did (tests written before versions).

Breaking changes are version-gated (documented: "breaking changes go only into new versions"):
- the create-image upload URL is `s3PutObjectUrl` up to 2025-01-01 (SDK 1.0.x), `upload_url` from
  2025-05-08 (SDK 1.1.0), `upload_file_url` from 2026-11-09 (docs; the exact version of the rename
  is inferred);
- from 2026-07-01 the sky is `restage.sky`: `sky_replacement` + `cloud_type` are still accepted and
  folded into it (documented), and answers show `restage` instead of them (inferred);
- `ai_version` channels (`latest`, `stable`, `beta`, numbered 5.1-5.3) exist from January 2026;
  that they are accepted and shown from API version 2026-07-01 (the first modelled version after
  the channels) is inferred. Older versions keep the numbered enum the official SDKs validate.

Additive features are served on every version (inferred from the same rule: only breaking changes
are gated): `restage` input, `default_image_sort_order`, `sort_images_by`, and `q`/`sort` on the
order list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.errors import ValidationFailed

KNOWN_VERSIONS = (
    "2024-10-01",
    "2024-11-01",
    "2025-01-01",
    "2025-05-08",
    "2025-08-31",
    "2026-07-01",
    "2026-10-01",
    "2026-11-09",
)
"""Every version the public material names, oldest first."""
MODELLED_VERSIONS = ("2025-01-01", "2025-05-08", "2026-07-01", "2026-10-01", "2026-11-09")
"""The versions whose differences the simulator models (the others behave as the one before them)."""
NEWEST = KNOWN_VERSIONS[-1]
RESTAGE_SKY_FROM = "2026-07-01"
CHANNELS_FROM = "2026-07-01"
UPLOAD_URL_FROM = "2025-05-08"
UPLOAD_FILE_URL_FROM = "2026-11-09"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ApiVersion:
    """The version one request is served; `date` None is the lenient account (every upload-URL key)."""

    date: str | None

    @property
    def lenient(self) -> bool:
        return self.date is None

    def at_least(self, version: str) -> bool:
        return self.date is not None and self.date >= version

    @property
    def upload_keys(self) -> tuple[str, ...]:
        if self.date is None:
            return ("upload_file_url", "upload_url", "s3PutObjectUrl")
        if self.date >= UPLOAD_FILE_URL_FROM:
            return ("upload_file_url",)
        if self.date >= UPLOAD_URL_FROM:
            return ("upload_url",)
        return ("s3PutObjectUrl",)

    @property
    def restage_sky(self) -> bool:
        """Answers show the sky in `restage.sky`, not in `sky_replacement`/`cloud_type`."""
        return self.at_least(RESTAGE_SKY_FROM)

    @property
    def channels(self) -> bool:
        """`ai_version` may be (and is shown as) a channel: latest, stable, beta."""
        return self.at_least(CHANNELS_FROM)


LENIENT = ApiVersion(None)


def parse_version(value: str) -> str:
    """A version date as served: a known one as it is, any other date as the newest version released
    on or before it (the oldest for an earlier date). How the real API treats an unknown date is not
    documented (inferred). Malformed: a 422 naming the header."""
    text = value.strip()
    if not _DATE.match(text):
        raise ValidationFailed("headers", {"x-api-version": ["Not a valid API version (YYYY-MM-DD)."]})
    earlier = [v for v in KNOWN_VERSIONS if v <= text]
    return earlier[-1] if earlier else KNOWN_VERSIONS[0]


def served(header: str | None, account: str | None) -> ApiVersion:
    """The header's version, else the account's."""
    if header is not None and header.strip():
        return ApiVersion(parse_version(header))
    return ApiVersion(account)
