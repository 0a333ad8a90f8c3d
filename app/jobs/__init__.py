"""Background jobs: the same archive as the streaming route, prepared on disk (202, poll, download).

`records` is what a job is; `store` the record interface (SQLite or Redis behind it); `manager`
creates jobs and serves results; `runner` runs them through the archive policy; `supervisor`
recovers, sweeps and expires them.
"""

from app.jobs.manager import JobManager
from app.jobs.records import Job, JobStatus

__all__ = ["Job", "JobManager", "JobStatus"]
