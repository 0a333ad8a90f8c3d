"""What the job system needs from a record store; callers hold this interface, never a backend.

Two backends implement it: `SqliteJobStore` (app/jobs/sqlite_store.py, one box, the default) and
`RedisJobStore` (app/jobs/redis_store.py, REDIS_URL: several API instances and workers). The record
is authoritative, so every write that races another process is conditional (`only_if` a status,
`only_attempt` a run) and says whether it won.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.config import Settings
from app.jobs.records import Job, JobStatus


class JobStore(Protocol):
    async def insert(self, job: Job) -> None: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def with_status(self, status: JobStatus) -> list[Job]:
        """Every job in `status`, oldest first."""
        ...

    async def count(self, status: JobStatus) -> int: ...

    async def count_by_status(self) -> dict[str, int]:
        """Job records per status (the jobs gauge of /metrics)."""
        ...

    async def due_for_expiry(self, cutoff: float) -> list[Job]:
        """Finished jobs whose result is not deleted yet and that finished at or before `cutoff`."""
        ...

    async def update(
        self, job_id: str, *, only_if: JobStatus | None = None, only_attempt: int | None = None, **fields: Any
    ) -> bool:
        """Set `fields` on one job; with `only_if`/`only_attempt`, only while in that status/run. True if written."""
        ...

    async def delete_finished_before(self, cutoff: float) -> list[str]:
        """Delete records finished before `cutoff`; their ids."""
        ...

    async def close(self) -> None: ...


async def open_store(settings: Settings) -> JobStore:
    """Redis with REDIS_URL (connected lazily: the service starts while Redis is down), else SQLite."""
    if settings.redis_url is not None:
        from app.jobs.redis_store import RedisJobStore

        return RedisJobStore.connect(settings.redis_url.get_secret_value(), settings.redis_key_prefix)
    from app.jobs.sqlite_store import SqliteJobStore

    return await SqliteJobStore.open(settings.data_dir / "jobs.sqlite3")
