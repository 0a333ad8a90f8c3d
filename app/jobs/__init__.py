"""Background jobs: the same archive as the streaming route, prepared on disk (202, poll, download).

`records` is what a job is, `store` keeps the records (SQLite), `manager` runs jobs on the engine.
"""

from app.jobs.manager import JobManager
from app.jobs.records import Job, JobStatus

__all__ = ["Job", "JobManager", "JobStatus"]
