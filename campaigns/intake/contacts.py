"""A CSV of contacts into a campaign, all or nothing, with a row-level report; or its dry run.

The file is read in chunks, decoded incrementally and parsed in batches, so memory depends on the
batch size, not on the file (reading, rows). A small import parses in a thread, a large one in a
pool of processes a few batches ahead of the one being stored (parsing). Each batch is then checked
against the database (do-not-call lists, reminders already past, numbers already there) and
stored: in one transaction on PostgreSQL (store_postgresql), through a staging table on SQLite
(store_sqlite, staging).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.dnc import blocked_numbers
from campaigns.events import ContactsDue, emit
from campaigns.intake import staging
from campaigns.intake.call_at import reminder_times
from campaigns.intake.parsing import NextBatch, automatic_processes, parsed_batches
from campaigns.intake.report import ImportReport
from campaigns.intake.rows import (
    DEFAULT_BATCH_SIZE,
    ParsedBatch,
    ParsedContact,
    parse_batches,
    reject,
)
from campaigns.intake.store import numbers_in_campaign, prepare_campaign
from campaigns.intake.store_postgresql import CopyStore
from campaigns.intake.store_sqlite import StagingStore
from campaigns.phones import DEFAULT_NUMBER_TYPES
from campaigns.sqlutil import dialect_name


def dry_run(
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
    batch_size: int = DEFAULT_BATCH_SIZE,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> ImportReport:
    """The report an import into an empty campaign would give, without a database."""
    report = ImportReport()
    for _ in dry_run_batches(
        source,
        default_region=default_region,
        phone_column=phone_column,
        report=report,
        batch_size=batch_size,
        number_types=number_types,
    ):
        pass
    return report


def dry_run_batches(
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
    report: ImportReport,
    batch_size: int = DEFAULT_BATCH_SIZE,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> Iterator[list[ParsedContact]]:
    """The accepted contacts, batch by batch, with duplicates in the file rejected in ``report``."""
    # Without a database the accepted numbers are remembered here (about 100 bytes per contact):
    # fine for a check or a named list, which is why the campaign import asks the database.
    accepted: set[str] = set()
    for parsed in parse_batches(
        source,
        default_region=default_region,
        phone_column=phone_column,
        batch_size=batch_size,
        number_types=number_types,
    ):
        batch = reject(parsed, accepted, "duplicate")
        accepted.update(contact.e164 for contact in batch.contacts)
        report.add(batch)
        yield batch.contacts


async def import_contacts(
    sessionmaker: async_sessionmaker[AsyncSession],
    campaign_id: str,
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
    next_attempt_at: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    default_timezone: str = "UTC",
    processes: int | None = None,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> ImportReport:
    """Add the file's contacts to a campaign: all valid rows, or nothing.

    One transaction on PostgreSQL; on SQLite, short ones through a staging table, so that other
    requests and the dispatcher get the database while a large file is stored (intake.staging).

    Numbers are parsed in ``processes`` worker processes while earlier batches are stored; by
    default one per CPU for a file of parsing.POOL_MIN_BYTES or more whose size is known (a seekable
    source), and none (a thread) otherwise. The report does not depend on it.

    Numbers whose type is not in ``number_types`` (the campaign's choice) are rejected.

    Raises ImportRefused (nothing imported) for a file that cannot be read as a contact list, and
    CampaignNotFound for an unknown campaign.
    """
    if next_attempt_at is not None and next_attempt_at.tzinfo is None:
        raise ValueError("next_attempt_at must be timezone-aware")
    due = next_attempt_at or utcnow()
    if processes is None:
        processes = automatic_processes(source)
    parsing = functools.partial(
        parsed_batches,
        source,
        default_region,
        phone_column,
        batch_size,
        processes,
        frozenset(number_types),
    )
    async with sessionmaker() as session:
        dialect = dialect_name(session)
    if dialect == "sqlite":
        return await _import_staged(sessionmaker, campaign_id, due, default_timezone, parsing)
    report = ImportReport()
    async with sessionmaker.begin() as session:
        await prepare_campaign(session, campaign_id)
        connection = await session.connection()
        store = CopyStore(connection.dialect, campaign_id, due)
        async with parsing() as next_batch:
            while (parsed := await next_batch()) is not None:
                checked = await _checked(session, campaign_id, parsed, default_timezone)
                inserted = await store.insert_new(connection, checked.contacts, checked.reminders)
                already_there = {contact.e164 for contact in checked.contacts} - inserted
                report.add(reject(checked.batch, already_there, "duplicate"))
        if report.accepted:
            emit(session, ContactsDue(campaign_id))
    return report


@dataclass(frozen=True, slots=True)
class _Checked:
    batch: ParsedBatch
    reminders: dict[str, datetime]

    @property
    def contacts(self) -> list[ParsedContact]:
        return self.batch.contacts


async def _checked(
    session: AsyncSession, campaign_id: str, parsed: ParsedBatch, default_timezone: str
) -> _Checked:
    """A batch without the numbers on a do-not-call list and the reminders already past."""
    numbers = [contact.e164 for contact in parsed.contacts]
    parsed = reject(parsed, await blocked_numbers(session, campaign_id, numbers), "dnc")
    reminders, late = reminder_times(parsed.contacts, default_timezone)
    return _Checked(reject(parsed, late, "invalid_call_at"), reminders)


async def _import_staged(
    sessionmaker: async_sessionmaker[AsyncSession],
    campaign_id: str,
    due: datetime,
    default_timezone: str,
    parsing: Callable[[], AbstractAsyncContextManager[NextBatch]],
) -> ImportReport:
    """SQLite: each batch staged in a transaction of its own, then published (intake.staging)."""
    async with sessionmaker.begin() as session:
        await prepare_campaign(session, campaign_id)
        run_id = await staging.open_run(session, staging.CONTACTS, campaign_id)
        dialect = (await session.connection()).dialect
    report = ImportReport()
    store = StagingStore(dialect, campaign_id, due)
    async with staging.deciding(sessionmaker, run_id), parsing() as next_batch:
        while (parsed := await next_batch()) is not None:
            # What needs no database is done before the batch takes the only connection: other
            # requests wait for each batch's transaction, and for nothing else.
            reminders, late = reminder_times(parsed.contacts, default_timezone)
            rows = store.staged_rows(run_id, parsed.contacts, reminders)
            async with staging.staging_batch(sessionmaker, run_id) as session:
                numbers = [contact.e164 for contact in parsed.contacts]
                blocked = await blocked_numbers(session, campaign_id, numbers)
                checked = reject(reject(parsed, blocked, "dnc"), late, "invalid_call_at")
                numbers = [contact.e164 for contact in checked.contacts]
                there = await numbers_in_campaign(session, campaign_id, numbers)
                batch = reject(checked, there, "duplicate")
                staged = await store.stage(
                    await session.connection(), [rows[contact.e164] for contact in batch.contacts]
                )
            repeated = {contact.e164 for contact in batch.contacts} - staged
            report.add(reject(batch, repeated, "duplicate"))
    published = await staging.publish(sessionmaker, run_id)
    report.add_late_duplicates(published.raced)
    return report
