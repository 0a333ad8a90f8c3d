"""Opening the service's SQLite files (jobs, webhook outbox, watches) the same way.

WAL, so readers never wait for the writer; synchronous=NORMAL, which is crash-safe under WAL and
spares an fsync per commit; a busy timeout, set first, since a file may have more than one
connection (several processes share a DATA_DIR with `serve --workers N`). Opening (journal mode,
schema, migrations, the integrity check, a caller's start-up fix-ups) runs under an exclusive lock
on `<name>.lock`, so processes starting together take turns there: before WAL is set, SQLite's
rollback journal answers two connections that both read then write with "database is locked" at
once, without waiting.

A damaged file must neither stop the service nor pass unnoticed. A file that is not a database or
fails SQLite's quick_check is moved aside (`<name>.corrupt-<UTC time>`, with its -wal/-shm) and a
new one started, with an error log naming both; a file truncated to 0 bytes (SQLite would quietly
treat it as a new, empty database) is logged as the loss it is. Any failure while opening closes
the connection: aiosqlite's worker thread is not a daemon, and a thread left running kept a
process whose start-up had failed from ever exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiosqlite

log = logging.getLogger("app.sqlite")

BUSY_TIMEOUT_MS = 10_000
"""How long a statement waits for another process's write to finish before \"database is locked\"."""
PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=NORMAL")
SIDECARS = ("-wal", "-shm")


async def connect(
    path: Path, schema: str, then: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None
) -> aiosqlite.Connection:
    """A connection to `path` with the pragmas set and `schema` (idempotent DDL) applied.

    `then` runs on the new connection while the opening lock is still held (migrations, start-up
    fix-ups), so no other process sees the file half set up."""
    async with _opening(path):
        db = await _connect(path, schema)
        if then is not None:
            try:
                await then(db)
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.close()
                raise
        return db


@contextlib.asynccontextmanager
async def _opening(path: Path) -> AsyncIterator[None]:
    """An exclusive lock on `<path>.lock` for as long as a process sets the database up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)  # released by close()
        yield
    finally:
        os.close(lock)


async def _connect(path: Path, schema: str) -> aiosqlite.Connection:
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
    db = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
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
    """0 bytes with no write-ahead log holding its pages: once a database, now nothing (start-up only).

    Each size is read once, a missing file counting as none: another process closing its last
    connection deletes the -wal file at any moment (it holds no opening lock to close), and a
    check-then-stat raised FileNotFoundError when the file went in between."""
    return _size(path) == 0 and not _size(path.with_name(path.name + "-wal"))


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(aside)
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):  # absent, or deleted as another process closed
            sidecar.replace(aside.with_name(aside.name + suffix))
    return aside
