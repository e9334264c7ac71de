"""Short tasks started by a request that must not hold up its response, closed with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from campaigns.tasks import TaskSet

TASKS = web.AppKey("background_tasks", TaskSet)


def spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    app[TASKS].spawn(coro)


async def background_tasks(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = TaskSet()
    yield
    # Give them a moment to finish (a hang-up in flight), then stop them.
    await app[TASKS].drain(5)
