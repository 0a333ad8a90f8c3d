"""CRC-32 (the ZIP one) of image bytes: ISA-L's implementation, not zlib's.

Every byte the service delivers is CRC'd once, before its member's header can be written (stored
members carry the CRC there). zlib's table-driven CRC costs about 0.3 CPU s per GB on this
project's machine; ISA-L's (the `isal` package, carry-less multiply instructions) about 0.02,
with the same results (`tests/core/test_spool.py` checks them against zlib's).
"""

from __future__ import annotations

from isal.isal_zlib import crc32

__all__ = ["crc32"]
