"""The service's SQLite files opened by several processes at once, as `serve --workers N` starts them.

Before WAL is set, SQLite's rollback journal answers two connections that both read and then write
with "database is locked" at once (no busy wait), and a file another process has just created, still
0 bytes, looked truncated. Six processes open the job store and the webhook outbox of a fresh
data_dir together, released by one barrier, in several rounds: each opens cleanly and no loss is logged.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import tempfile
from pathlib import Path
from typing import Any

PROCESSES = 6
ROUNDS = 8


def _open_both(directory: str, barrier: Any, results: Any) -> None:
    results.put(_opened(directory, barrier))


def _opened(directory: str, barrier: Any) -> str:
    from app.jobs.sqlite_store import SqliteJobStore
    from app.webhooks.outbox import SqliteOutbox

    alarms: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            alarms.append(record.getMessage())

    logging.getLogger("app.sqlite").addHandler(Collect(logging.ERROR))

    async def run() -> None:
        barrier.wait()
        outbox = await SqliteOutbox.open(Path(directory) / "webhooks.sqlite3")
        store = await SqliteJobStore.open(Path(directory) / "jobs.sqlite3")
        await outbox.close()
        await store.close()

    try:
        asyncio.run(run())
    except Exception as exc:
        return repr(exc)
    return "; ".join(alarms) or "ok"


def test_processes_starting_together_open_the_same_databases_cleanly(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for _ in range(ROUNDS):
        directory = tempfile.mkdtemp(dir=tmp_path)
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_open_both, args=(directory, barrier, results)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes += [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(10)
    assert outcomes == ["ok"] * (PROCESSES * ROUNDS), [o for o in outcomes if o != "ok"]
