"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(session: AsyncSession, table: Table, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING the primary key (None when it already existed)."""
    return insert_rows_ignoring_conflicts(session, table).values(**values)


def insert_rows_ignoring_conflicts(session: AsyncSession, table: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING the primary key of the rows added, for rows given
    at execution (``session.execute(statement, rows)``): compiled once whatever their number,
    sent as multi-row statements (SQLAlchemy's "insertmanyvalues")."""
    module = postgresql if dialect_name(session) == "postgresql" else sqlite
    pk = next(iter(table.primary_key.columns))
    return module.insert(table).on_conflict_do_nothing().returning(pk)


async def record_once(
    sm: async_sessionmaker[AsyncSession],
    write: Callable[[AsyncSession], Awaitable[T]],
    read: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """``write`` in a transaction of its own; when a unique key says another request recorded the
    same thing meanwhile (a provider's retry, the same fact told by two paths), ``read`` answers
    what that request stored. A second try covers a conflict on a row the first try only read.
    A try PostgreSQL chose as a deadlock's victim (or whose snapshot went stale) is tried again:
    nothing of it was kept."""
    conflicts = retries = 0
    while conflicts < 2:
        try:
            async with sm.begin() as session:
                return await write(session)
        except IntegrityError:
            conflicts += 1
        except DBAPIError as exc:
            retries += 1
            if not transient(exc) or retries > TRANSIENT_RETRIES:
                raise
    async with sm() as session:
        return await read(session)


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back as
# a whole, and the same transaction tried again can succeed.
_TRANSIENT_STATES = ("40P01", "40001")
TRANSIENT_RETRIES = 3


def transient(exc: DBAPIError) -> bool:
    """The database gave up the transaction for another's sake; trying it again is safe."""
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_STATES
