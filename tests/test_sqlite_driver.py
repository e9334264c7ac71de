"""SQLite's statements cross to aiosqlite's thread once each, and mean what they meant: rows,
counts, new row ids and errors as SQLAlchemy reports them from any SQLite driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from campaigns.db import make_engine


async def test_a_statement_is_one_hand_off_to_sqlites_thread(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'driver.db'}")
    try:
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
            hand_offs: list[object] = []
            original = driver._execute

            async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
                hand_offs.append(fn)
                return await original(fn, *args, **kwargs)

            driver._execute = counted
            try:
                inserted = await conn.execute(
                    text("INSERT INTO t (name) VALUES (:a), (:b)"), {"a": "x", "b": "y"}
                )
                rows = (await conn.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
                updated = await conn.execute(text("UPDATE t SET name = name || '!'"))
                many = await conn.execute(
                    text("INSERT INTO t (name) VALUES (:name)"), [{"name": "p"}, {"name": "q"}]
                )
            finally:
                driver._execute = original
            assert len(hand_offs) == 4  # one per statement
            assert inserted.rowcount == 2
            assert inserted.lastrowid == 2
            assert rows == [(1, "x"), (2, "y")]
            assert updated.rowcount == 2
            assert many.rowcount == 2
            with pytest.raises(IntegrityError):
                await conn.execute(text("INSERT INTO t (name) VALUES ('x!')"))
    finally:
        await engine.dispose()
