"""Alembic, run on the service's own async engine (serve migrates at start; `db upgrade` too)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

# Any constant works; it only has to be the same for every node of one deployment.
MIGRATION_LOCK_ID = 0x63616C6C


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    # Independent features add independent revisions on top of 0001: upgrade every head.
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several nodes starting together must not run the same migration at once.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "heads"))
