"""Databases made and dropped on a PostgreSQL server, for tests and benchmarks."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.engine import make_url


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
