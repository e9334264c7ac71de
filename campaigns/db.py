"""Engine and session factory for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from campaigns import sqlite_driver
from campaigns.events import EventBus

SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite connections that only read (make_read_engine): reads side by side with the writer.
SQLITE_READERS = 2


def async_url(url: str) -> str:
    """Accept the URLs people write (``sqlite:///x.db``, ``postgresql://…``); use async drivers."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_private_file(path: str | None) -> None:
    """Create a SQLite database file readable and writable by its owner only, if it is new.

    SQLite creates the file with the process's umask (often world-readable) and gives the -wal and
    -shm files the database file's permissions: an empty file made first, mode 0600, holds them
    all to its owner. An existing file keeps the permissions its owner gave it.
    """
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return  # it exists, or SQLite will report the missing directory itself


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = async_url(url)
    if is_sqlite(url):
        create_private_file(make_url(url).database)
        # One connection, handed out in turn by the pool's queue: SQLite allows one writer at a
        # time anyway, and its busy handler sleeps in growing steps that stall every waiter.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 120)
        return _sqlite_engine(
            url,
            # WAL lets readers (make_read_engine's) proceed while the dispatcher writes.
            ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"),
            # IMMEDIATE takes the write lock up front: a deferred transaction that later upgrades
            # to a writer fails at once with SQLITE_BUSY instead of waiting out busy_timeout.
            begin="BEGIN IMMEDIATE",
            **kwargs,
        )
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def make_read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine for sessions that only read (the API's and the dashboard's reads).

    On SQLite, ``engine`` has one connection, taken in turn by every transaction (one writer at
    a time): a read queued behind the writes waits for all of them, so under load a campaign's
    read would take as long as the queue. WAL lets readers go on beside the writer, so reads get
    connections of their own: they begin deferred (no write lock, a snapshot of the last commit)
    and refuse to write (``query_only``).

    PostgreSQL's pool already serves reads beside writes: there reads share ``engine``'s pool,
    without a transaction (autocommit). Under READ COMMITTED each statement of a transaction
    sees its own snapshot anyway, so a read loses nothing, and saves the BEGIN and the ROLLBACK:
    two of its round trips, each of which waits for the event loop's turn on a busy node.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in database:
        # An in-memory database is private to its connection: a reader would see another one.
        return engine
    return _sqlite_engine(
        url,
        # A reader may be the file's first connection: WAL is set by whichever comes first.
        ("journal_mode=WAL", "query_only=ON"),
        # Deferred: the transaction reads one snapshot and never waits for the write lock.
        begin="BEGIN",
        pool_size=SQLITE_READERS,
        max_overflow=0,
        pool_timeout=120,
    )


def _sqlite_engine(url: Any, pragmas: tuple[str, ...], *, begin: str, **kwargs: Any) -> AsyncEngine:
    """An engine on a SQLite file whose connections set ``pragmas`` (and the busy timeout) and
    begin each transaction with ``begin``."""
    engine = create_async_engine(
        url,
        module=sqlite_driver.dbapi(),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **kwargs,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        # We issue BEGIN ourselves (below), so the driver must not.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def make_sessionmaker(
    engine: AsyncEngine, events: EventBus | None = None
) -> async_sessionmaker[AsyncSession]:
    # A Session subclass of its own, so that event listeners stay with this sessionmaker.
    session_class = type("CallbridgeSession", (Session,), {})
    if events is not None:
        events.attach(session_class)
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class)


def make_read_sessionmaker(read_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``make_read_engine``'s engine: for reads only (they emit no domain events)."""
    return async_sessionmaker(read_engine, expire_on_commit=False)
