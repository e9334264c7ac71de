"""Background tasks (campaigns/tasks.py): held while they run, let go when they end, and at
shutdown given their grace period before what still runs is cancelled."""

from __future__ import annotations

import asyncio

from campaigns.tasks import TaskSet
from tests.conftest import eventually


async def test_tasks_are_held_while_they_run_and_a_drain_cancels_what_outlives_its_grace() -> None:
    tasks = TaskSet()
    finishing = asyncio.Event()

    async def finishes() -> None:
        await finishing.wait()

    async def never_ends() -> None:
        # A task that starts another: the drain cancels both.
        tasks.spawn(asyncio.sleep(3600))
        await asyncio.sleep(3600)

    quick = tasks.spawn(finishes())
    slow = tasks.spawn(never_ends(), name="slow")
    await eventually(lambda: len(tasks) == 3, what="the task started by a task")
    finishing.set()
    await eventually(quick.done, what="the quick task to end")
    assert len(tasks) == 2
    await tasks.drain(grace_seconds=0.05)
    assert slow.cancelled() and len(tasks) == 0
