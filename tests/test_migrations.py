"""The Alembic revisions build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bridge.migrate import upgrade_to_head
from campaigns.db import make_engine
from campaigns.tables import metadata


def _diff(sync_conn: Any) -> list[Any]:
    context = MigrationContext.configure(
        sync_conn,
        opts={
            "compare_type": True,
            "include_name": lambda name, type_, parents: (
                type_ != "table" or name in metadata.tables
            ),
        },
    )
    return list(compare_metadata(context, metadata))


async def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # a second run is a no-op (every node runs it at start)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
