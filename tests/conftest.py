"""Every test gets a database of its own: a SQLite file, or a fresh PostgreSQL database when
CALLBRIDGE_TEST_DATABASE_URL names a server (the suite runs both ways in CI)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

TEST_DATABASE_URL_ENV = "CALLBRIDGE_TEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--scenarios",
        action="store_true",
        help="also run the long scenario tests (chaos, multi-node), marked 'scenario'",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Deselected, not skipped: they do not fail, they belong to another run (see .ci/run).
    if config.getoption("--scenarios"):
        return
    long = [item for item in items if item.get_closest_marker("scenario")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("scenario")]


def _on_server(url: str, statement: str) -> None:
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


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    server = os.environ.get(TEST_DATABASE_URL_ENV)
    if not server:
        yield f"sqlite:///{tmp_path / 'callbridge.db'}"
        return
    name = f"cb_test_{secrets.token_hex(6)}"
    _on_server(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        _on_server(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
