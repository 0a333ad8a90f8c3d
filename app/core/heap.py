"""Freed image buffers stay in the process's heap, so the next image reuses their pages.

Every byte the service streams passes through a buffer allocated when it arrives and freed once
it is sent: hundreds of megabytes a second of 64 KiB - 1 MiB buffers. glibc's malloc serves a
buffer above its mmap threshold with fresh pages, and gives the top of its heap back to the kernel
once more than its trim threshold is free there; both thresholds adjust themselves to about the
size of the last large buffer freed, so at full speed the heap is handed back and taken again all
the time. Each fresh page then costs a page fault and the kernel zeroing it: 40,000 - 170,000
faults per GB streamed, most of the system time beyond the sockets' own (ENGINEERING_LOG.md, "The
byte path again").

Fixed thresholds stop that: buffers up to MMAP_THRESHOLD come from the heap, and up to
TRIM_THRESHOLD of free heap is kept for the next ones. The price is resident memory that an idle
process keeps after a busy moment, at most TRIM_THRESHOLD more. Only glibc has `mallopt` with these
meanings; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("app.heap")

MMAP_THRESHOLD = 4 * 1024 * 1024
"""Larger than any buffer of the byte path (blocks of 1 MiB, disk reads of 1 MiB)."""
TRIM_THRESHOLD = 32 * 1024 * 1024
"""About two streams' worth of buffers (SPOOL_REQUEST_MEMORY_BYTES is 16 MiB by default)."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_done: bool | None = None


def keep_freed_buffers() -> bool:
    """Fix the allocator's thresholds (once per process); whether the C library took them."""
    global _done
    if _done is None:
        _done = _set_thresholds()
    return _done


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_libc_version = libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    del gnu_libc_version
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.warning("the allocator refused fixed thresholds: freed buffers may go back to the kernel")
    return done
