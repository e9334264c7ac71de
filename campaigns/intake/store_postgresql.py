"""PostgreSQL: a file's contacts stored by COPY, in the import's one transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from campaigns.intake.rows import ParsedContact
from campaigns.intake.store import STORED_COLUMNS, ContactRows

# Each import transaction's own staging table for COPY; dropped at commit.
_COPY_TABLE = "contacts_import_staging"
_LISTED = ", ".join(STORED_COLUMNS)
# The unique index answers "is this number already in the campaign?" row by row (ON CONFLICT):
# selecting the batch's numbers first would depend on the planner, and without fresh statistics (a
# new or fast-growing table) PostgreSQL scans the whole campaign for every batch. Numbers others
# insert meanwhile (single calls, API lists) conflict too.
_MOVE = (
    f"WITH batch AS (DELETE FROM {_COPY_TABLE} RETURNING {_LISTED}) "
    f"INSERT INTO contacts ({_LISTED}) SELECT {_LISTED} FROM batch "
    "ON CONFLICT (campaign_id, phone_number, dedupe_scope) DO NOTHING "
    "RETURNING phone_number"
)


class CopyStore:
    """Stores a file's contacts, batch by batch: COPY into a table of the transaction's own, then
    moved over in one statement."""

    def __init__(self, dialect: Dialect, campaign_id: str, due: datetime) -> None:
        self._rows = ContactRows(dialect, campaign_id, due)
        self._copy_table_ready = False

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
        rows = self._rows.rows(contacts, reminders)
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        if not self._copy_table_ready:
            await driver.execute(
                f"CREATE TEMPORARY TABLE {_COPY_TABLE} "
                "(LIKE contacts INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            self._copy_table_ready = True
        await driver.copy_records_to_table(_COPY_TABLE, records=rows, columns=STORED_COLUMNS)
        return {record[0] for record in await driver.fetch(_MOVE)}
