"""Databases made and dropped on a PostgreSQL server, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from campaigns.db import make_engine


def on_server(url: str, statement: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the server that ``url`` names."""
    parsed = make_url(url)

    async def run() -> None:
        conn = await asyncpg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database=parsed.database or "postgres",
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def query_rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of a query on a service's database, read apart from the service."""

    async def run() -> list[Any]:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as connection:
                return list((await connection.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())
