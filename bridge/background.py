"""Short tasks started by a request that must not hold up its response, closed with the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

TASKS = web.AppKey("background_tasks", set)


def spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    tasks: set[asyncio.Task[None]] = app[TASKS]
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def background_tasks(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = set()
    yield
    tasks = list(app[TASKS])
    if tasks:
        # Give them a moment to finish (a hang-up in flight), then stop them.
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
