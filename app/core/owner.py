"""Which process on this box holds something, and whether that process still lives.

Several processes may share one DATA_DIR (`python -m app serve --workers N`). A job record, an
outbox lease, a spool folder and a cache write each name the process that holds them
(`PROCESS`, "host:pid"), so another process can tell a holder that is working from one that died
and take its work over at once, without waiting for a lease to lapse. A holder on another host
cannot be checked from here: for those, the lease decides (as in the scaled-out mode).
"""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()
PID = os.getpid()
PROCESS = f"{HOST}:{PID}"


def gone(holder: str | None) -> bool:
    """True if `holder` ("host:pid") is a process of this host that no longer runs.

    Unknown, malformed or other hosts' holders are not judged gone (their lease decides). This
    process itself is alive; a holder that names this pid but was written by an earlier process of
    the same pid (a container restarted as pid 1) is the caller's to judge at start-up.
    """
    if not holder or ":" not in holder:
        return False
    host, _, pid_text = holder.rpartition(":")
    if host != HOST or not pid_text.isdigit():
        return False
    return not alive(int(pid_text))


def alive(pid: int) -> bool:
    """A process with this pid exists on this host (a zombie counts as gone)."""
    if pid == PID:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing any more
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True

