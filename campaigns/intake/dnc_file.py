"""A CSV of numbers onto a do-not-call list, all or nothing.

Every row of the file is stored, or none (a file refused half-way, or a failure while storing,
leaves the lists as they were). One transaction on PostgreSQL; on SQLite, short ones through a
staging table (intake.staging). The file is parsed in a thread, batch by batch, so a large one
never holds up the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Generator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.dnc import add_many
from campaigns.intake import staging
from campaigns.intake.reading import NUL, cell, is_blank
from campaigns.intake.report import MAX_REPORTED_ERRORS, keep_first
from campaigns.models import StagedDncEntry
from campaigns.phones import ANY_NUMBER_TYPE, PhoneRejected, normalize
from campaigns.sqlutil import dialect_name

PHONE_COLUMN = "phone_number"
REASON_COLUMN = "reason"
_BATCH_ROWS = 1_000
_MAX_REASON_CHARS = 200  # DncEntry.reason is String(200)
_MAX_VALUE_CHARS = 64  # of a rejected cell, echoed in the report


class DncFileRefused(ValueError):
    """The whole file is refused (nothing is stored); the message is meant for the user."""


@dataclass
class DncImportReport:
    rows: int = 0
    added: int = 0
    already_listed: int = 0
    rejected: int = 0
    # The first rejected rows only (the counts stay exact): {row, value, reason}.
    errors: list[dict[str, Any]] = field(default_factory=list)

    def count(self, batch: _Batch) -> None:
        """A batch's rows and rejections (the numbers it adds are counted once stored)."""
        self.rows += batch.rows
        self.rejected += len(batch.errors)
        keep_first(self.errors, batch.errors, MAX_REPORTED_ERRORS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "already_listed": self.already_listed,
            "rejected": self.rejected,
            "errors": self.errors,
        }


@dataclass(slots=True)
class _Batch:
    rows: int = 0
    numbers: list[tuple[str, str | None]] = field(default_factory=list)  # (E.164, reason)
    errors: list[dict[str, Any]] = field(default_factory=list)


async def import_file(
    sessionmaker: async_sessionmaker[AsyncSession],
    source: BinaryIO,
    *,
    campaign_id: str | None,
    default_region: str,
) -> DncImportReport:
    """Add every number of a CSV (column ``phone_number``, optional ``reason``) to one list.

    All the file's valid numbers, or nothing. Raises DncFileRefused (nothing
    stored) for a file that is not a UTF-8 CSV with a phone_number column.
    """
    report = DncImportReport()
    batches = _parsed_batches(source, default_region)
    try:
        async with sessionmaker() as session:
            staged = dialect_name(session) == "sqlite"
        if staged:
            return await _import_staged(sessionmaker, batches, campaign_id, report)
        async with sessionmaker.begin() as session:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                report.count(batch)
                added = await add_many(session, batch.numbers, campaign_id)
                report.added += added
                report.already_listed += len(batch.numbers) - added
    finally:
        # Let go of the file now, while the caller still has it open (not when collected).
        if not batches.gi_running:
            batches.close()
    return report


async def _import_staged(
    sessionmaker: async_sessionmaker[AsyncSession],
    batches: Generator[_Batch, None, None],
    campaign_id: str | None,
    report: DncImportReport,
) -> DncImportReport:
    """SQLite: each batch staged in a transaction of its own, then published (intake.staging)."""
    async with sessionmaker.begin() as session:
        run_id = await staging.open_run(session, staging.DNC, campaign_id)
    valid = 0
    async with staging.deciding(sessionmaker, run_id):
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            report.count(batch)
            valid += len(batch.numbers)
            async with staging.staging_batch(sessionmaker, run_id) as session:
                await _stage(session, run_id, batch.numbers)
    report.added = (await staging.publish(sessionmaker, run_id)).added
    report.already_listed = valid - report.added
    return report


async def _stage(session: AsyncSession, run_id: str, numbers: list[tuple[str, str | None]]) -> None:
    # A number repeated in the file keeps its first reason (the staged number is unique per run).
    if numbers:
        rows = [
            {"import_id": run_id, "phone_number": e164, "reason": reason}
            for e164, reason in numbers
        ]
        await session.execute(sqlite.insert(StagedDncEntry).values(rows).on_conflict_do_nothing())


def _parsed_batches(source: BinaryIO, default_region: str) -> Generator[_Batch, None, None]:
    """The file's rows in batches, numbers checked; CPU work, meant to run in a thread."""
    text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text)
        header = _record(reader, "The header row")
        columns = {name.strip().lower(): index for index, name in enumerate(header or [])}
        if PHONE_COLUMN not in columns:
            raise DncFileRefused(f"The CSV has no {PHONE_COLUMN} column.")
        phone, reason = columns[PHONE_COLUMN], columns.get(REASON_COLUMN)
        row_number = 1  # the header is row 1, as a spreadsheet shows it
        batch = _Batch()
        while (record := _record(reader, f"Row {row_number + 1}")) is not None:
            row_number += 1
            if is_blank(record):
                continue
            value = cell(record, phone).strip()
            try:
                # Any valid number may be listed, whatever its type: a campaign may come to
                # allow that type later, and a listed number is never dialled anyway.
                e164 = normalize(value, default_region, ANY_NUMBER_TYPE).e164
            except PhoneRejected as exc:
                shown = value.replace(NUL, "")[:_MAX_VALUE_CHARS]
                batch.errors.append({"row": row_number, "value": shown, "reason": exc.reason})
            else:
                batch.numbers.append((e164, _reason(record, reason)))
            batch.rows += 1
            if batch.rows >= _BATCH_ROWS:
                yield batch
                batch = _Batch()
        if batch.rows:
            yield batch
    finally:
        # The caller owns the file: do not let the wrapper close it when collected.
        with suppress(ValueError):
            text.detach()


def _record(reader: Any, where: str) -> list[str] | None:
    try:
        return next(reader, None)
    except UnicodeDecodeError as exc:
        raise DncFileRefused(
            "The file is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again."
        ) from exc
    except csv.Error as exc:
        raise DncFileRefused(f"{where} is not valid CSV: {exc}.") from exc


def _reason(record: list[str], column: int | None) -> str | None:
    if column is None:
        return None
    # A note, not the number: a stray NUL (which PostgreSQL cannot store) or an overlong text
    # must not keep the number off the list, so they are trimmed rather than refused.
    note = cell(record, column).replace(NUL, "").strip()[:_MAX_REASON_CHARS]
    return note or None
