"""Signed job callbacks (Standard Webhooks), their persistent outbox, and Autoenhance's own webhook.

`service.Webhooks` is the facade (`services.webhooks`); job runners call `job_finished(job)` only.
`urls` guards against SSRF, `signing` signs, `payload` is the callback body (and its OpenAPI
schema), `outbox` persists deliveries (SQLite or Redis), `dispatcher` sends and retries them,
`watches` remembers which orders to turn into jobs when Autoenhance says they are done, and
`watcher` turns them into jobs (it is built after the job manager, which it needs).
"""

from app.webhooks.service import Webhooks

__all__ = ["Webhooks"]
