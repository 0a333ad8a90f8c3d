"""Memory stays flat: a 400-image, 1.2 GB order streams with the service growing < 150 MiB.

The service runs as its own uvicorn process (as users run it) so its RSS is measured alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.memory import measure


@pytest.mark.heavy
def test_large_order_streams_in_flat_memory(tmp_path: Path) -> None:
    result = measure(images=400, size=3_000_000, work_dir=tmp_path)
    print(result.line())
    assert result.bytes_streamed > 1_200_000_000
    assert result.zip_complete, "the archive did not end with its end-of-central-directory record"
    assert result.growth_mib < 150, result.line()
