"""Secrets generated once per installation and kept in its database.

Every process of one installation (service nodes, a separate sandbox carrier) reads the same rows,
so they agree on the secrets without anyone copying them around. A secret is created by the first
process that asks for it; two processes creating it at once both end up with the winner's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import String, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.base import Base
from campaigns.clock import utcnow


class InstallationSecret(Base):
    __tablename__ = "installation_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def stored_secrets(engine: AsyncEngine, names: list[str]) -> dict[str, str]:
    """The stored secrets among ``names``; none while the schema is not migrated yet."""
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(InstallationSecret.name, InstallationSecret.value).where(
                    InstallationSecret.name.in_(names)
                )
            )
            return {name: value for name, value in rows}
    except DBAPIError:
        # No table yet (a process started before the first migration): nothing is stored.
        return {}


async def ensure_secrets(
    engine: AsyncEngine, generators: Mapping[str, Callable[[], str]]
) -> dict[str, str]:
    """Every named secret, generated and stored first where missing."""
    names = list(generators)
    stored = await stored_secrets(engine, names)
    missing = [name for name in names if name not in stored]
    if missing:
        rows = [{"name": n, "value": generators[n](), "created_at": utcnow()} for n in missing]
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(InstallationSecret), rows)
        except IntegrityError:
            pass  # another process stored them first: theirs are the installation's
        stored = await stored_secrets(engine, names)
    return stored
