"""Files several requests need at the same time, downloaded once: resumes of one layout share them.

A resume fetches every file the rest of its archive needs before its first byte. Two resumes of the
same cut download (a browser retrying, a download manager opening several connections) need the
same files, so they join one `Group` (by layout id): each file is downloaded by whichever resume
asks first, and the others wait for that download. A file stays while any resume holds it (its spool
is read by each of them: spools on disk are read with positional reads, so readers do not disturb
each other) and is closed, or its download cancelled, when the last one lets go. The group's files
share one memory account (SPOOL_REQUEST_MEMORY_BYTES): however many resumes join, one layout's
files hold that much in memory at most, the rest on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from app.core.spool import Spool

Result = Spool | str
"""A spooled file, or why it could not be had (reason and recovery, one line each)."""


@dataclass
class _File:
    task: asyncio.Task[Result]
    holds: int = 0


@dataclass
class Group:
    """One layout's files, and what its downloads share (memory account, budget slots)."""

    key: str
    context: Any
    files: dict[str, _File] = field(default_factory=dict)
    holds: int = 0


class SharedFiles:
    """Every group in flight in this process (one per engine)."""

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}

    @property
    def files(self) -> int:
        """Files held or downloading now, over every group."""
        return sum(len(group.files) for group in self._groups.values())

    def join(self, key: str, context: Callable[[], Any]) -> Hold:
        """A hold on group `key`, made (with `context()`) if nobody holds it yet."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(key, context())
        group.holds += 1
        return Hold(self, group)

    def _leave(self, group: Group) -> None:
        group.holds -= 1
        if group.holds == 0 and self._groups.get(group.key) is group:
            del self._groups[group.key]


class Hold:
    """One request's share of a group: the files it asked for, let go together by `aclose()`."""

    def __init__(self, registry: SharedFiles, group: Group) -> None:
        self._registry = registry
        self.group = group
        self._names: list[str] = []
        self._closed = False

    def fetch(self, name: str, start: Callable[[], Coroutine[Any, Any, Result]]) -> asyncio.Task[Result]:
        """The download of `name`: the group's own if one is under way or done, else `start()`ed now."""
        file = self.group.files.get(name)
        if file is None:
            file = self.group.files[name] = _File(asyncio.create_task(start(), name=f"shared-{name[:40]}"))
        if name not in self._names:
            file.holds += 1
            self._names.append(name)
        return file.task

    async def results(self, names: list[str], start: Callable[[str], Coroutine[Any, Any, Result]]) -> dict[str, Result]:
        """Each of `names`, fetched or joined; waiting here never cancels a download another request shares."""
        tasks = {name: self.fetch(name, lambda name=name: start(name)) for name in names}  # type: ignore[misc]
        if tasks:
            await asyncio.wait(tasks.values())
        return {name: task.result() for name, task in tasks.items()}

    async def aclose(self) -> None:
        """Let go of every file; the last holder of a file closes its spool or cancels its download
        (and waits for it to close its spool)."""
        if self._closed:
            return
        self._closed = True
        cancelled = []
        for name in self._names:
            file = self.group.files.get(name)
            if file is None:
                continue
            file.holds -= 1
            if file.holds > 0:
                continue
            del self.group.files[name]
            if not file.task.done():
                file.task.cancel()  # its download closes its own spool when cancelled
                cancelled.append(file.task)
            elif not file.task.cancelled() and file.task.exception() is None:
                result = file.task.result()
                if isinstance(result, Spool):
                    result.close()
        self._registry._leave(self.group)
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)
