"""Standard Webhooks signatures (webhook-id, webhook-timestamp, webhook-signature), via `standardwebhooks`.

Why the library: it is the reference implementation receivers use to verify, so signing with it
means our bytes and theirs cannot drift. The secret is `whsec_<base64>` (the form the spec and its
libraries use) or, for convenience, any other text, used as raw UTF-8 key bytes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret


def signer(secret: str) -> Webhook:
    """A Webhook for `secret`: `whsec_<base64>` is decoded, anything else is used as raw bytes."""
    return Webhook(secret if secret.startswith(SECRET_PREFIX) else secret.encode())


def signed_headers(hook: Webhook, webhook_id: str, body: str, now: float | None = None) -> dict[str, str]:
    """The three headers of one delivery attempt: the timestamp is the attempt's, the id the message's."""
    timestamp = int(time.time() if now is None else now)
    signature = hook.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
