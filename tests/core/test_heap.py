"""Freed buffers of the byte path stay in the heap: allocating the next ones costs no page faults.

Measured in a fresh interpreter (the setting is process-wide, and the test process may hold it
already): rounds of twenty 1 MiB buffers allocated and freed, as images pass through the service."""

from __future__ import annotations

import subprocess
import sys

import pytest

ROUNDS = """
import resource, sys
if sys.argv[1] == "kept":
    from app.core.heap import keep_freed_buffers
    assert keep_freed_buffers()
def rounds(n):
    for _ in range(n):
        blocks = [bytearray(1024 * 1024) for _ in range(20)]
        del blocks
rounds(2)  # the heap grows to its working size once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(50)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    default, kept = faults("default"), faults("kept")
    assert default > 50 * 20 * 100  # the default gives most of each round back and faults it in again
    assert kept < 1000, (default, kept)
