"""Background tasks held until they end and drained at shutdown, as one small type.

The event loop keeps only a weak reference to a task: one nobody holds may be collected while it
runs. A TaskSet holds each task it started until it ends, counts those still running, and at
shutdown gives them a grace period to finish before it cancels the rest and waits for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, work: Coroutine[Any, Any, Any] | Awaitable[Any], *, name: str | None = None
    ) -> asyncio.Future[Any]:
        """Start ``work`` as a task (or hold the future it already is) until it ends."""
        if asyncio.iscoroutine(work):
            task: asyncio.Future[Any] = asyncio.get_running_loop().create_task(work, name=name)
        else:
            task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, grace_seconds: float = 0.0) -> None:
        """Wait up to ``grace_seconds`` for the tasks to end, then cancel what still runs and
        wait for it to unwind."""
        if self._tasks and grace_seconds > 0:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        # Read again: a task may have started another while they were given time.
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
