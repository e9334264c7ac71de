"""Storing parsed contacts in a campaign, in the way each database does it fastest.

A file's contacts go to the driver as rows (``ContactStore``: multi-row inserts on SQLite, COPY on
PostgreSQL); a list of contacts given in a request goes through SQLAlchemy's insert
(``insert_new``). Both store the same values, and both let the unique index answer "is this number
already in the campaign?".
"""

from __future__ import annotations

import functools
import itertools
import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.intake.errors import CampaignNotFound
from campaigns.intake.rows import ParsedContact
from campaigns.models import Campaign, Contact, ContactState

# First key of the PostgreSQL advisory lock that serialises imports into one campaign.
_IMPORT_LOCK_NAMESPACE = 0x43420001
# SQLite allows 32766 variables per statement: 16 columns a row leave room for 2047 rows.
_SQLITE_ROWS_PER_STATEMENT = 512
# Each import transaction's own staging table for COPY (PostgreSQL); dropped at commit.
_COPY_TABLE = "contacts_import_staging"
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

# The columns a file's contact fills, in the order ContactStore builds its rows; the others keep
# their defaults (NULL: no idempotency key, disposition or finish time).
_STORED_COLUMNS = (
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
# A staged contact (models.StagedContact) holds the file's own columns of a contact, plus its run
# and the phone cell as written; publishing fills in the rest (intake.staging).
_FILLED_ON_PUBLISH = (
    "campaign_id",
    "dedupe_scope",
    "number_index",
    "failures_on_number",
    "state",
    "attempts_made",
    "created_at",
)
_STAGED_FROM_STORED = tuple(
    index for index, name in enumerate(_STORED_COLUMNS) if name not in _FILLED_ON_PUBLISH
)
_STAGED_COLUMNS = (
    "import_id",
    "raw",
    *(_STORED_COLUMNS[index] for index in _STAGED_FROM_STORED),
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


class ContactStore:
    """Stores a file's contacts, batch by batch, in the import's transaction.

    Rows go to the driver as they are (an executemany on SQLite, COPY on PostgreSQL), each value
    converted by its column type's own bind processor: the same stored values as an ORM insert,
    without its per-row bookkeeping, which cost more than parsing the numbers.
    """

    def __init__(self, dialect: Dialect, campaign_id: str, due: datetime) -> None:
        self._campaign_id = campaign_id
        self._due = due
        self._dialect = dialect
        columns = Contact.__table__.c
        self._bind = {
            name: columns[name].type.dialect_impl(self._dialect).bind_processor(self._dialect)
            or _as_is
            for name in _STORED_COLUMNS
        }
        # Most contacts of a file share a few zone lists and have no alternate numbers.
        self._zones_json = functools.lru_cache(maxsize=4096)(
            lambda zones: self._bind["time_zones"](list(zones))
        )
        self._alternates_json = functools.lru_cache(maxsize=256)(
            lambda numbers: self._bind["alternate_numbers"](list(numbers))
        )
        self._copy_table_ready = False
        self._sqlite_inserts: dict[tuple[str, int], str] = {}
        listed = ", ".join(_STORED_COLUMNS)
        self._move_sql = (
            f"WITH batch AS (DELETE FROM {_COPY_TABLE} RETURNING {listed}) "
            f"INSERT INTO contacts ({listed}) SELECT {listed} FROM batch "
            "ON CONFLICT (campaign_id, phone_number, dedupe_scope) DO NOTHING "
            "RETURNING phone_number"
        )

    async def insert_new(
        self,
        connection: AsyncConnection,
        contacts: list[ParsedContact],
        reminders: dict[str, datetime],
    ) -> set[str]:
        """Insert the contacts whose number the campaign does not have yet; return their numbers.

        Numbers within one batch are distinct (the parser rejects repeats).
        """
        if not contacts:
            return set()
        rows = self._rows(contacts, reminders)
        if self._dialect.name == "postgresql":
            return await self._copy_new(connection, rows)
        return await self._insert_absent(connection, "contacts", _STORED_COLUMNS, rows)

    async def stage(
        self,
        connection: AsyncConnection,
        run_id: str,
        contacts: list[ParsedContact],
        reminders: dict[str, datetime],
    ) -> set[str]:
        """Stage contacts for a run (SQLite); the numbers staged, without the file's repeats."""
        if not contacts:
            return set()
        rows = [
            (run_id, contact.raw, *(row[index] for index in _STAGED_FROM_STORED))
            for contact, row in zip(contacts, self._rows(contacts, reminders), strict=True)
        ]
        return await self._insert_absent(connection, "staged_contacts", _STAGED_COLUMNS, rows)

    def _rows(
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

    async def _insert_absent(
        self,
        connection: AsyncConnection,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
    ) -> set[str]:
        # SQLite: multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (sqlite3's executemany
        # cannot return rows). Chunks of power-of-two sizes keep the distinct statements, which
        # sqlite3 caches prepared (a big one each), to a handful.
        inserted: set[str] = set()
        start, size = 0, _SQLITE_ROWS_PER_STATEMENT
        while start < len(rows):
            while size > len(rows) - start:
                size //= 2
            chunk = rows[start : start + size]
            result = await connection.exec_driver_sql(
                self._sqlite_insert(table, columns, size),
                tuple(itertools.chain.from_iterable(chunk)),
            )
            inserted.update(result.scalars())
            start += size
        return inserted

    def _sqlite_insert(self, table: str, columns: tuple[str, ...], rows: int) -> str:
        key = (table, rows)
        if key not in self._sqlite_inserts:
            row = "(" + ", ".join("?" * len(columns)) + ")"  # sqlite3's paramstyle
            # Conflicts on the table's unique number: in the campaign, or in the staged file.
            self._sqlite_inserts[key] = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                + ", ".join([row] * rows)
                + " ON CONFLICT DO NOTHING RETURNING phone_number"
            )
        return self._sqlite_inserts[key]

    async def _copy_new(self, connection: AsyncConnection, rows: list[tuple[Any, ...]]) -> set[str]:
        # PostgreSQL: COPY the batch into a staging table, then move it over in one statement.
        # The unique index answers "is this number already in the campaign?" row by row (ON
        # CONFLICT): selecting the batch's numbers first would depend on the planner, and without
        # fresh statistics (a new or fast-growing table) PostgreSQL scans the whole campaign for
        # every batch. Numbers others insert meanwhile (single calls, API lists) conflict too.
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        if not self._copy_table_ready:
            await driver.execute(
                f"CREATE TEMPORARY TABLE {_COPY_TABLE} "
                "(LIKE contacts INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            self._copy_table_ready = True
        await driver.copy_records_to_table(_COPY_TABLE, records=rows, columns=_STORED_COLUMNS)
        return {record[0] for record in await driver.fetch(self._move_sql)}


def _as_is(value: Any) -> Any:
    return value
