"""SQLite: a file's contacts staged for a run by multi-row inserts (see intake.staging)."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.intake.rows import ParsedContact
from campaigns.intake.store import STORED_COLUMNS, ContactRows

# SQLite allows 32766 variables per statement: 16 columns a row leave room for 2047 rows.
_ROWS_PER_STATEMENT = 512
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
    index for index, name in enumerate(STORED_COLUMNS) if name not in _FILLED_ON_PUBLISH
)
_STAGED_COLUMNS = (
    "import_id",
    "raw",
    *(STORED_COLUMNS[index] for index in _STAGED_FROM_STORED),
)


class StagingStore:
    """Stages a file's contacts, batch by batch, each batch in its own short transaction."""

    def __init__(self, dialect: Dialect, campaign_id: str, due: datetime) -> None:
        self._rows = ContactRows(dialect, campaign_id, due)
        self._inserts: dict[int, str] = {}

    def staged_rows(
        self, run_id: str, contacts: list[ParsedContact], reminders: dict[str, datetime]
    ) -> dict[str, tuple[Any, ...]]:
        """Each contact's staged row, by number: built before the batch's transaction, so that
        the transaction holds the only connection for its statements alone."""
        return {
            contact.e164: (run_id, contact.raw, *(row[index] for index in _STAGED_FROM_STORED))
            for contact, row in zip(contacts, self._rows.rows(contacts, reminders), strict=True)
        }

    async def stage(self, connection: AsyncConnection, rows: list[tuple[Any, ...]]) -> set[str]:
        """Stage rows of staged_rows(); the numbers staged, without the file's repeats."""
        if not rows:
            return set()
        return await self._insert_absent(connection, rows)

    async def _insert_absent(
        self, connection: AsyncConnection, rows: list[tuple[Any, ...]]
    ) -> set[str]:
        # Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING (sqlite3's executemany cannot
        # return rows). Chunks of power-of-two sizes keep the distinct statements, which sqlite3
        # caches prepared (a big one each), to a handful.
        inserted: set[str] = set()
        start, size = 0, _ROWS_PER_STATEMENT
        while start < len(rows):
            while size > len(rows) - start:
                size //= 2
            chunk = rows[start : start + size]
            result = await connection.exec_driver_sql(
                self._insert(size), tuple(itertools.chain.from_iterable(chunk))
            )
            inserted.update(result.scalars())
            start += size
        return inserted

    def _insert(self, rows: int) -> str:
        if rows not in self._inserts:
            row = "(" + ", ".join("?" * len(_STAGED_COLUMNS)) + ")"  # sqlite3's paramstyle
            # Conflicts on the staged number, unique per run: the file's own repeats.
            self._inserts[rows] = (
                f"INSERT INTO staged_contacts ({', '.join(_STAGED_COLUMNS)}) VALUES "
                + ", ".join([row] * rows)
                + " ON CONFLICT DO NOTHING RETURNING phone_number"
            )
        return self._inserts[rows]
