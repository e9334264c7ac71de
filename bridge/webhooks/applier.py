"""Provider events applied in groups: one transaction for whatever arrived meanwhile.

Every callback still gets its answer only once its event is committed, and each event is
applied exactly as on its own (in arrival order, deduplicated, raw payload stored). Under load
many callbacks wait for the database at once; committing them together spends one transaction
(and, on SQLite, one turn of its single connection) on many of them instead of one each.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_events import Applied, record_event, record_events
from campaigns.call_updates import CallUpdate
from campaigns.tasks import TaskSet

log = logging.getLogger(__name__)

# A group this large still commits quickly; more would hold locks for longer.
MAX_GROUP = 200


@dataclass
class _Pending:
    update: CallUpdate
    done: asyncio.Future[Applied]


class EventApplier:
    def __init__(self, sm: async_sessionmaker[AsyncSession], writers: int) -> None:
        self._sm = sm
        self._writers = writers
        self._queue: list[_Pending] = []
        self._running = TaskSet()

    async def apply(self, update: CallUpdate) -> Applied:
        loop = asyncio.get_running_loop()
        pending = _Pending(update, loop.create_future())
        self._queue.append(pending)
        if len(self._running) < self._writers:
            self._running.spawn(self._write(), name="callback-applier")
        # shield: a caller that goes away mid-commit leaves the others' group alone.
        return await asyncio.shield(pending.done)

    async def _write(self) -> None:
        # Let the callbacks already on their way join this group.
        await asyncio.sleep(0)
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                results = await record_events(self._sm, [p.update for p in group])
            except Exception:
                if len(group) > 1:
                    log.info("a group of %d events failed; applying them one by one", len(group))
                await self._one_by_one(group)
                continue
            for pending, result in zip(group, results, strict=True):
                if not pending.done.done():
                    pending.done.set_result(result)

    async def _one_by_one(self, group: list[_Pending]) -> None:
        for pending in group:
            try:
                result = await record_event(self._sm, pending.update)
            except Exception as exc:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            else:
                if not pending.done.done():
                    pending.done.set_result(result)


def new_applier(sm: async_sessionmaker[AsyncSession]) -> EventApplier:
    """The application's applier (one per database: SQLite gets a single writer)."""
    sqlite = sm.kw["bind"].dialect.name == "sqlite"
    # PostgreSQL applies groups side by side, within the pool, rows locked per event.
    return EventApplier(sm, writers=1 if sqlite else 4)
