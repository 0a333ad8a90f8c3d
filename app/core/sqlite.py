"""Opening the service's SQLite files (jobs, webhook outbox, watches) the same way.

WAL, so readers never wait for the writer; synchronous=NORMAL, which is crash-safe under WAL and
spares an fsync per commit; a busy timeout, since a file may have more than one connection.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000")


async def connect(path: Path, schema: str) -> aiosqlite.Connection:
    """A connection to `path` with the pragmas set and `schema` (idempotent DDL) applied."""
    db = await aiosqlite.connect(path)
    for pragma in PRAGMAS:
        await db.execute(f"PRAGMA {pragma}")
    await db.executescript(schema)
    return db
