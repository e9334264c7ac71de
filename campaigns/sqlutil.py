"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_ignoring_conflicts(session: AsyncSession, table: Table, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING the primary key (None when it already existed)."""
    module = postgresql if dialect_name(session) == "postgresql" else sqlite
    pk = next(iter(table.primary_key.columns))
    return module.insert(table).values(**values).on_conflict_do_nothing().returning(pk)


def insert_many_ignoring_conflicts(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], returning: Any
) -> Any:
    """One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING ``returning`` of the rows added."""
    module = postgresql if dialect_name(session) == "postgresql" else sqlite
    return module.insert(table).values(rows).on_conflict_do_nothing().returning(returning)
