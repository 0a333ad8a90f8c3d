"""Share links: a signed, expiring token naming one job's archive, opened without the service key.

Why HMAC and not a random id looked up in a table: a forged or mangled link is refused by arithmetic
(no store read), and the link carries its own expiry. Revocation still needs the store: each link has
a `share_id` kept in the job's record with its expiry, and a revoked one is marked there.

Token: `<job_id>.<share_id>.<expires (unix seconds)>.<signature>`, the signature HMAC-SHA256 over the
first three parts with the server's secret, base64url without padding. The secret is SHARE_SECRET, or
one generated once and kept at `<data_dir>/share_secret` (0600) so links outlive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"^([0-9a-f-]{36})\.([A-Za-z0-9_-]{8,32})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")
SECRET_FILE = "share_secret"  # noqa: S105 (the name of the file that holds it)


@dataclass(frozen=True)
class ShareToken:
    job_id: str
    share_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ShareSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def make(self, job_id: str, share_id: str, expires_at: int) -> str:
        payload = f"{job_id}.{share_id}.{expires_at}"
        return f"{payload}.{self._sign(payload)}"

    def tag(self, text: str) -> str:
        """A short signature of `text` (a share page's thumbnail URLs: only the photos it lists)."""
        return self._sign("tag:" + text)[:22]

    def check_tag(self, text: str, tag: str) -> bool:
        return hmac.compare_digest(tag, self.tag(text))

    def read(self, token: str) -> ShareToken | None:
        """The token's claims if its signature is ours (expiry and revocation are the caller's to check)."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        job_id, share_id, expires, signature = match.groups()
        if not hmac.compare_digest(signature, self._sign(f"{job_id}.{share_id}.{expires}")):
            return None
        return ShareToken(job_id, share_id, int(expires))


def new_share_id() -> str:
    return secrets.token_urlsafe(9)


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """SHARE_SECRET, else the secret kept under data_dir (made once, readable by this user only)."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes()
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
    return secret
