"""Storing parsed contacts in a campaign: what both databases share.

A list of contacts given in a request goes through SQLAlchemy's insert (``insert_new``). A file's
contacts go to the driver as rows (``ContactRows``), in the way each database takes them fastest:
staged by multi-row inserts on SQLite (store_sqlite), COPY on PostgreSQL (store_postgresql). Both
store the same values, and both let the unique index answer "is this number already there?".
"""

from __future__ import annotations

import functools
import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.intake.errors import CampaignNotFound
from campaigns.intake.rows import ParsedContact
from campaigns.models import Campaign, Contact, ContactState

# First key of the PostgreSQL advisory lock that serialises imports into one campaign.
_IMPORT_LOCK_NAMESPACE = 0x43420001
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

# The columns a file's contact fills, in the order ContactRows builds them; the others keep
# their defaults (NULL: no idempotency key, disposition or finish time).
STORED_COLUMNS = (
    "id",
    "campaign_id",
    "external_id",
    "phone_number",
    "dedupe_scope",
    "alternate_numbers",
    "number_index",
    "failures_on_number",
    "time_zones",
    "dynamic_variables",
    "row_number",
    "state",
    "attempts_made",
    "next_attempt_at",
    "call_at",
    "created_at",
)


async def prepare_campaign(session: AsyncSession, campaign_id: str) -> str:
    """Check the campaign exists and return the database's dialect name."""
    dialect = (await session.connection()).dialect.name
    if dialect not in _INSERTS:
        raise NotImplementedError(f"contact import supports {sorted(_INSERTS)}, not {dialect}")
    if dialect == "postgresql":
        # Two uploads into one campaign inserting the same numbers in different orders would wait
        # on each other's rows (a deadlock, one upload lost): they take turns instead. SQLite's
        # write transactions already do.
        key = _signed32(zlib.crc32(campaign_id.encode()))
        await session.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK_NAMESPACE, key)))
    found = await session.scalar(select(Campaign.id).where(Campaign.id == campaign_id))
    if found is None:
        raise CampaignNotFound(f"Campaign {campaign_id!r} does not exist.")
    return dialect


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


async def numbers_in_campaign(
    session: AsyncSession, campaign_id: str, numbers: list[str]
) -> set[str]:
    """Which of ``numbers`` the campaign has already (among the contacts of files and lists)."""
    if not numbers:
        return set()
    found = await session.scalars(
        select(Contact.phone_number).where(
            Contact.campaign_id == campaign_id,
            Contact.dedupe_scope == "",
            Contact.phone_number.in_(numbers),
        )
    )
    return set(found)


async def insert_new(
    session: AsyncSession,
    dialect: str,
    campaign_id: str,
    contacts: list[ParsedContact],
    due: datetime,
    reminders: dict[str, datetime] | None = None,
) -> set[str]:
    """Insert the contacts whose number the campaign does not have yet; return their numbers.

    For lists of contacts given in a request (a handful to a few thousand). The unique index
    answers "is this number already in the campaign?" row by row. Selecting the batch's numbers
    first would depend on the planner, and without fresh statistics (a new or fast-growing table)
    PostgreSQL scans the whole campaign for every batch.
    """
    if not contacts:
        return set()
    statement = (
        _INSERTS[dialect](Contact)
        .on_conflict_do_nothing(index_elements=["campaign_id", "phone_number", "dedupe_scope"])
        .returning(Contact.phone_number)
    )
    result = await session.execute(
        statement,
        [
            _contact_values(campaign_id, contact, due, (reminders or {}).get(contact.e164))
            for contact in contacts
        ],
    )
    return set(result.scalars())


def _contact_values(
    campaign_id: str, contact: ParsedContact, due: datetime, call_at: datetime | None = None
) -> dict[str, Any]:
    return {
        "call_at": call_at,
        "id": new_id("ct"),
        "campaign_id": campaign_id,
        "external_id": contact.external_id,
        "phone_number": contact.e164,
        "time_zones": list(contact.time_zones),
        "dynamic_variables": contact.dynamic_variables,
        "row_number": contact.row,
        "state": ContactState.PENDING,
        "dedupe_scope": "",
        "alternate_numbers": list(contact.alternates),
        "next_attempt_at": max(due, call_at) if call_at else due,
    }


class ContactRows:
    """A file's contacts as rows of STORED_COLUMNS, ready for the driver (store_sqlite,
    store_postgresql).

    Each value is converted by its column type's own bind processor: the same stored values as an
    ORM insert, without its per-row bookkeeping, which cost more than parsing the numbers.
    """

    def __init__(self, dialect: Dialect, campaign_id: str, due: datetime) -> None:
        self._campaign_id = campaign_id
        self._due = due
        columns = Contact.__table__.c
        self._bind = {
            name: columns[name].type.dialect_impl(dialect).bind_processor(dialect) or _as_is
            for name in STORED_COLUMNS
        }
        # Most contacts of a file share a few zone lists and have no alternate numbers.
        self._zones_json = functools.lru_cache(maxsize=4096)(
            lambda zones: self._bind["time_zones"](list(zones))
        )
        self._alternates_json = functools.lru_cache(maxsize=256)(
            lambda numbers: self._bind["alternate_numbers"](list(numbers))
        )

    def rows(
        self, contacts: list[ParsedContact], reminders: dict[str, datetime]
    ) -> list[tuple[Any, ...]]:
        bind = self._bind
        when, dynamic = bind["next_attempt_at"], bind["dynamic_variables"]
        due = when(self._due)
        created = bind["created_at"](utcnow())
        campaign_id, pending = self._campaign_id, ContactState.PENDING
        rows = []
        for contact in contacts:
            call_at = reminders.get(contact.e164)
            rows.append(
                (
                    new_id("ct"),
                    campaign_id,
                    contact.external_id,
                    contact.e164,
                    "",
                    self._alternates_json(contact.alternates),
                    0,
                    0,
                    self._zones_json(contact.time_zones),
                    dynamic(contact.dynamic_variables),
                    contact.row,
                    pending,
                    0,
                    when(max(self._due, call_at)) if call_at else due,
                    when(call_at) if call_at else None,
                    created,
                )
            )
        return rows


def _as_is(value: Any) -> Any:
    return value
