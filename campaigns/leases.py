"""Work that must happen on one node at a time, when several share one database.

PostgreSQL session advisory locks: held by a connection, released when the holder unlocks or its
connection dies (a killed node gives its locks back at once). SQLite serves a single process, so
the lock is always granted there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (PostgreSQL's advisory lock key space)."""
    digest = hashlib.sha256(f"callbridge:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yield True if this node holds the lock ``name`` for the block, False if another does.

    Never waits: a node that finds the lock taken skips the work, the holder does it.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    async with engine.connect() as conn:
        acquired = bool(await conn.scalar(select(func.pg_try_advisory_lock(key))))
        # The lock belongs to the session, not the transaction: end the transaction at once.
        await conn.commit()
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    await conn.scalar(select(func.pg_advisory_unlock(key)))
                    await conn.commit()
                except Exception:
                    # A connection that may still hold the lock must not go back to the pool.
                    await conn.invalidate()
                    log.warning("could not release lock %s; connection discarded", name)
