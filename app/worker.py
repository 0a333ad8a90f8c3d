"""`python -m app.worker`: a job worker for the scaled-out mode (REDIS_URL set).

It runs the same engine, job manager and webhook dispatcher as an API process, without HTTP: it
takes "run job X" messages from the Redis queue (taskiq-redis), at most MAX_RUNNING_JOBS at once,
renews each job's lease while it runs, publishes the archive (S3_BUCKET, or this machine's disk),
and queues the job's signed callback. SIGTERM/SIGINT hand its running jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from app.config import Settings
from app.jobs.queue import stream_key
from app.ops.logs import configure_logging, configure_sentry

log = logging.getLogger("app.worker")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve jobs until `stop` is set, then shut down cleanly (the same services as an API process,
    metered and traced the same way; only HTTP is missing)."""
    from app.ops.telemetry import Telemetry
    from app.wiring import Services

    telemetry = Telemetry.from_settings(settings)
    services = await Services.start(settings, telemetry, consume=True)
    try:
        log.info("worker ready", extra={"queue": stream_key(settings.redis_key_prefix)})
        await stop.wait()
    finally:
        await services.aclose()
        telemetry.shutdown()


def main() -> int:
    settings = Settings()
    configure_logging(settings)
    configure_sentry(settings)
    if settings.redis_url is None:
        print("python -m app.worker needs REDIS_URL: without it, the API process runs its own jobs", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    if not settings.s3_bucket:
        log.warning("no S3_BUCKET: job results stay on this worker's disk, where API instances cannot serve them")
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
