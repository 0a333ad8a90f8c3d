"""Opening the service's SQLite files (jobs, webhook outbox, watches) the same way.

WAL, so readers never wait for the writer; synchronous=NORMAL, which is crash-safe under WAL and
spares an fsync per commit; a busy timeout, since a file may have more than one connection.

A damaged file must neither stop the service nor pass unnoticed. A file that is not a database or
fails SQLite's quick_check is moved aside (`<name>.corrupt-<UTC time>`, with its -wal/-shm) and a
new one started, with an error log naming both; a file truncated to 0 bytes (SQLite would quietly
treat it as a new, empty database) is logged as the loss it is. Any failure while opening closes
the connection: aiosqlite's worker thread is not a daemon, and a thread left running kept a
process whose start-up had failed from ever exiting.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import aiosqlite

log = logging.getLogger("app.sqlite")

PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000")
SIDECARS = ("-wal", "-shm")


async def connect(path: Path, schema: str) -> aiosqlite.Connection:
    """A connection to `path` with the pragmas set and `schema` (idempotent DDL) applied."""
    if _truncated(path):
        log.error(
            "database %s is empty (0 bytes): it was truncated, and every record it held is lost; "
            "starting a new one (restore it from a backup to get them back)",
            path,
        )
    try:
        return await _open(path, schema)
    except sqlite3.OperationalError:
        raise  # locked, full, unopenable: not damage to move aside; the caller's error says which
    except sqlite3.DatabaseError as exc:
        aside = _move_aside(path)
        log.error(
            "database %s is corrupt (%s): moved aside to %s and started a new, empty one; the records "
            "in the old file are not available to the service (inspect or restore that file)",
            path, exc, aside,
        )
        return await _open(path, schema)


async def _open(path: Path, schema: str) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path)
    try:
        for pragma in PRAGMAS:
            await db.execute(f"PRAGMA {pragma}")
        await db.executescript(schema)
        async with db.execute("PRAGMA quick_check") as cursor:
            row = await cursor.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
    except BaseException:
        with contextlib.suppress(Exception):
            await db.close()
        raise
    return db


def _truncated(path: Path) -> bool:
    """0 bytes with no write-ahead log holding its pages: once a database, now nothing (start-up only)."""
    wal = path.with_name(path.name + "-wal")
    empty_wal = not wal.is_file() or wal.stat().st_size == 0
    return path.is_file() and path.stat().st_size == 0 and empty_wal


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(aside)
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            sidecar.replace(aside.with_name(aside.name + suffix))
    return aside
