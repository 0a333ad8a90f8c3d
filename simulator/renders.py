"""Rendered downloads, cached: Pillow work happens once per (source bytes, options) in a worker.

Two small LRUs: decoded/enhanced full-size bases (a handful; they are big) and encoded results
(bounded by bytes). Concurrent requests for the same rendition share one job.

Keyed by the source's content, not its image id: a rendition depends only on the bytes and the
options, so an order of identical photos, or the same photo in another order or another simulator
in the same process (the tests start hundreds), is rendered once. One renderer serves the process
(`shared()`), as its worker pool does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

from simulator import imaging

RenderKey = tuple[Any, ...]

_POOL_LOCK = threading.Lock()
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """One small worker pool per process, shared by every simulator instance."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="sim-render"
            )
        return _POOL


class Renderer:
    """Turns stored source bytes into download bytes off the event loop."""

    def __init__(self, *, max_bytes: int = 128 * 1024 * 1024, max_bases: int = 6) -> None:
        self._max_bytes = max_bytes
        self._max_bases = max_bases
        self._results: OrderedDict[RenderKey, tuple[bytes, str]] = OrderedDict()
        self._result_bytes = 0
        self._bases: OrderedDict[RenderKey, Image.Image] = OrderedDict()
        self._inflight: dict[RenderKey, concurrent.futures.Future[tuple[bytes, str]]] = {}
        self._lock = threading.RLock()  # re-entrant: a done callback may run inline

    async def render(self, data: bytes, spec: imaging.RenderSpec) -> tuple[bytes, str]:
        """Bytes and Content-Type for `spec` of the source `data` (raises imaging.ImageDecodeError)."""
        key = (hashlib.blake2b(data, digest_size=16).digest(), spec)
        with self._lock:
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return hit
            future = self._inflight.get(key)
            if future is None:
                future = _pool().submit(self._render_sync, key, data, spec)
                self._inflight[key] = future
                future.add_done_callback(functools.partial(self._finish, key))
        # shield: one cancelled client must not cancel a render others are waiting for
        return await asyncio.shield(asyncio.wrap_future(future))

    def _finish(self, key: RenderKey, future: concurrent.futures.Future[tuple[bytes, str]]) -> None:
        with self._lock:
            self._inflight.pop(key, None)
            if future.cancelled() or future.exception() is not None:
                return
            result = future.result()
            self._results[key] = result
            self._result_bytes += len(result[0])
            while self._result_bytes > self._max_bytes and len(self._results) > 1:
                _, (old, _) = self._results.popitem(last=False)
                self._result_bytes -= len(old)

    def _render_sync(self, key: RenderKey, data: bytes, spec: imaging.RenderSpec) -> tuple[bytes, str]:
        digest, _ = key
        base_key = (digest, spec.enhanced, spec.enhance_type)
        with self._lock:
            base = self._bases.get(base_key)
            if base is not None:
                self._bases.move_to_end(base_key)
        if base is None:
            base = imaging.decode(data)
            if spec.enhanced:
                base = imaging.enhance(base, spec.enhance_type)
            with self._lock:
                self._bases[base_key] = base
                while len(self._bases) > self._max_bases:
                    self._bases.popitem(last=False)
        return imaging.render(base, spec)


_SHARED: Renderer | None = None


def shared() -> Renderer:
    """The process's renderer: every simulator in it shares one cache, bounded as one."""
    global _SHARED
    with _POOL_LOCK:
        if _SHARED is None:
            _SHARED = Renderer()
        return _SHARED
