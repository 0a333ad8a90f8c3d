"""The hosts an operator vouches for, read once and asked by both checks on where downloads go.

Two checks guard an image download: the redirect check (app/core/upstream/client.py: before a hop is
followed, plain http and private address literals are refused unless the host is trusted) and the
resolver (app/core/upstream/transport.py: on the addresses a name resolves to, the ones then dialled). Each used
to parse ALLOWED_ASSET_HOSTS itself; a rule written twice can drift apart, so it is written here.

Entries: `host` trusts every port of that host, `host:port` that port only, IPv6 in brackets
(`[::1]:8080`); host names compare case-insensitively.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

HostPort = tuple[str, int | None]
"""(lower-case host without brackets, port); port None: every port."""

ENV_NAME = "ALLOWED_ASSET_HOSTS"


def split_entries(text: str) -> list[str]:
    """ALLOWED_ASSET_HOSTS as written: comma separated, blanks ignored (Settings applies this same rule)."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def env_entries(environ: Mapping[str, str] = os.environ) -> list[str]:
    """ALLOWED_ASSET_HOSTS from the environment, for the command line: it cannot read Settings, whose
    pydantic-settings comes only with the server extra."""
    return split_entries(environ.get(ENV_NAME, ""))


def host_and_port(entry: str) -> HostPort:
    """`host` or `host:port` (IPv6 in brackets) as configured in ALLOWED_ASSET_HOSTS."""
    parts = urlsplit(entry if "//" in entry else f"//{entry}")
    return (parts.hostname or entry).lower(), parts.port


@dataclass(frozen=True)
class TrustedHosts:
    """A set of `host` / `host:port` entries, parsed once; `trusts` is the only question asked of it."""

    entries: frozenset[HostPort] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedHosts:
        return cls(frozenset(host_and_port(entry) for entry in entries))

    @classmethod
    def origin(cls, url: str) -> TrustedHosts:
        """The host and port of `url` (the default port of its scheme made explicit): the API's own."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(frozenset({((parts.hostname or "").lower(), port)}))

    def __or__(self, other: TrustedHosts) -> TrustedHosts:
        return TrustedHosts(self.entries | other.entries)

    def trusts(self, host: str, port: int | None) -> bool:
        host = host.lower().strip("[]")
        return (host, None) in self.entries or (host, port) in self.entries
