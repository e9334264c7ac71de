"""Streaming CSV intake: contacts in, a row-level report out.

The file is read in chunks, decoded incrementally and parsed in batches, so memory depends on the
batch size, not on the file. One generator (``parse_batches``) does all the parsing, for the
database import and the dry run alike.

Row numbers are the ones a spreadsheet shows: the header is row 1 and every CSV record after it
counts one row (record counter + 1), blank records included. A quoted cell spanning several lines is
still one row, so after such a cell the row number is lower than the file's line number.

Records whose cells are all blank (trailing ``,,,`` lines that spreadsheets export) are skipped:
they keep their row number but are not counted in the report.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import itertools
import re
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.dnc import blocked_numbers
from campaigns.ids import new_id
from campaigns.models import Campaign, Contact, ContactState
from campaigns.phones import PhoneRejected, normalize
from campaigns.reminders import BadCallAt, parse_call_at

DEFAULT_BATCH_SIZE = 1_000
# The report keeps the first errors only, so a file of a million bad rows gives a bounded report;
# the counts stay exact.
MAX_REPORTED_ERRORS = 1_000

_CHUNK_BYTES = 64 * 1024
# A "line" this long means the file is not a CSV (or has no line breaks at all): refuse it rather
# than buffer it.
_MAX_LINE_CHARS = 1024 * 1024
_MAX_VALUE_CHARS = 100  # of a rejected cell, echoed in the report
_MAX_EXTERNAL_ID_CHARS = 200  # Contact.external_id is String(200)
# A column of this name makes each row a reminder (ISO 8601; naive means the recipient's time).
CALL_AT_COLUMN = "call_at"
_DELIMITERS = (",", ";", "\t")
_ID_COLUMN = "id"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_QUOTED = re.compile(r'"[^"]*"')
# First key of the PostgreSQL advisory lock that serialises imports into one campaign.
_IMPORT_LOCK_NAMESPACE = 0x43420001


class ImportRefused(ValueError):
    """The whole file is refused (nothing is imported); the message is meant for the user."""


class CampaignNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    value: str
    reason: str  # missing | unparseable | invalid | premium_rate | duplicate

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "value": self.value, "reason": self.reason}


@dataclass
class ImportReport:
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    max_errors: int = field(default=MAX_REPORTED_ERRORS, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "errors": [error.to_dict() for error in self.errors],
        }

    def add(self, batch: ParsedBatch) -> None:
        self.rows += batch.rows
        self.accepted += len(batch.contacts)
        self.rejected += len(batch.errors)
        room = self.max_errors - len(self.errors)
        if room > 0:
            self.errors.extend(batch.errors[:room])


@dataclass(frozen=True, slots=True)
class ParsedContact:
    row: int
    raw: str  # the phone cell as written, for the report if the number turns out a duplicate
    e164: str
    time_zones: tuple[str, ...]
    external_id: str | None
    dynamic_variables: dict[str, str]
    alternates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    rows: int
    contacts: list[ParsedContact]
    errors: list[RowError]  # in row order


@dataclass(frozen=True, slots=True)
class _Columns:
    phone: int
    external_id: int | None
    variables: tuple[tuple[str, int], ...]
    alternates: tuple[int, ...] = ()  # phone_number_2, phone_number_3, ... in that order


def parse_batches(
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[ParsedBatch]:
    """Parse ``source`` into batches of at most ``batch_size`` rows.

    Numbers repeated inside a batch are rejected here; repeats across batches (and uploads) are the
    caller's to find, since only the caller knows what was accepted before. Raises ImportRefused,
    possibly after some batches were yielded (a bad byte late in the file).
    """
    lines = _decoded_lines(source)
    first_line = next(lines, None)
    if first_line is None or not first_line.strip():
        if first_line is None or _only_blank(lines):
            raise ImportRefused("The file is empty.")
        raise ImportRefused("The first line is blank: it must be the header (the column names).")
    reader = csv.reader(itertools.chain([first_line], lines), delimiter=_sniff(first_line))
    columns = _columns(_next_record(reader), phone_column)
    data_rows = 0
    for batch in _batches(reader, columns, default_region, batch_size):
        data_rows += batch.rows
        yield batch
    if data_rows == 0:
        raise ImportRefused("The file has a header but no data rows.")


def dry_run(
    source: BinaryIO,
    *,
    default_region: str,
    phone_column: str = "phone_number",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportReport:
    """The report an import into an empty campaign would give, without a database."""
    report = ImportReport()
    for _ in dry_run_batches(
        source,
        default_region=default_region,
        phone_column=phone_column,
        report=report,
        batch_size=batch_size,
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
) -> Iterator[list[ParsedContact]]:
    """The accepted contacts, batch by batch, with duplicates in the file rejected in ``report``."""
    # Without a database the accepted numbers are remembered here (about 100 bytes per contact):
    # fine for a check or a named list, which is why the campaign import asks the database.
    accepted: set[str] = set()
    for parsed in parse_batches(
        source, default_region=default_region, phone_column=phone_column, batch_size=batch_size
    ):
        batch = _reject(parsed, accepted, "duplicate")
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
) -> ImportReport:
    """Add the file's contacts to a campaign in one transaction: all valid rows, or nothing.

    Raises ImportRefused (nothing imported) for a file that cannot be read as a contact list, and
    CampaignNotFound for an unknown campaign.
    """
    if next_attempt_at is not None and next_attempt_at.tzinfo is None:
        raise ValueError("next_attempt_at must be timezone-aware")
    due = next_attempt_at or utcnow()
    batches = parse_batches(
        source, default_region=default_region, phone_column=phone_column, batch_size=batch_size
    )
    report = ImportReport()
    async with sessionmaker.begin() as session:
        dialect = await _prepare_campaign(session, campaign_id)
        # Decoding, CSV and phonenumbers are CPU work: a worker thread keeps the event loop free.
        while (parsed := await asyncio.to_thread(next, batches, None)) is not None:
            blocked = await blocked_numbers(session, campaign_id, [c.e164 for c in parsed.contacts])
            parsed = _reject(parsed, blocked, "dnc")
            reminders, late = _reminder_times(parsed.contacts, default_timezone)
            parsed = _reject(parsed, late, "invalid_call_at")
            inserted = await _insert_new(
                session, dialect, campaign_id, parsed.contacts, due, reminders
            )
            already_there = {contact.e164 for contact in parsed.contacts} - inserted
            report.add(_reject(parsed, already_there, "duplicate"))
    return report


# --- reading the file -------------------------------------------------------------------------


def _decoded_lines(source: BinaryIO) -> Iterator[str]:
    """Lines of UTF-8 text (BOM dropped), line endings kept, as the csv module expects."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    rest = ""
    lines_done = 0
    while True:
        chunk = source.read(_CHUNK_BYTES)
        final = not chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            line = lines_done + _line_breaks(rest + _decodable_prefix(exc)) + 1
            raise ImportRefused(
                f"The file is not UTF-8 text (first bad byte on line {line}). "
                "Save it as 'CSV UTF-8' and upload it again."
            ) from exc
        lines, rest = _split_lines(rest + text, final)
        lines_done += len(lines)
        yield from lines
        if final:
            return
        if len(rest) > _MAX_LINE_CHARS:
            raise ImportRefused(
                f"Line {lines_done + 1} is longer than {_MAX_LINE_CHARS} characters: "
                "this does not look like a CSV file."
            )


def _split_lines(text: str, final: bool) -> tuple[list[str], str]:
    # A trailing "\r" may be the first half of a "\r\n" split across chunks: keep it for later.
    end = len(text) - 1 if not final and text.endswith("\r") else len(text)
    # Search only up to the last line break: a regex scan over a long unterminated tail would
    # restart at every character of it.
    cut = max(text.rfind("\n", 0, end), text.rfind("\r", 0, end)) + 1
    lines = _LINE.findall(text, 0, cut)
    rest = text[cut:]
    if final and rest:
        return [*lines, rest], ""
    return lines, rest


def _line_breaks(text: str) -> int:
    return len(_LINE_BREAK.findall(text))


def _decodable_prefix(exc: UnicodeDecodeError) -> str:
    # exc.object is what the decoder was given (its carried-over bytes included), so exc.start
    # indexes into it.
    return exc.object[: exc.start].decode("utf-8")


def _only_blank(lines: Iterator[str]) -> bool:
    return all(not line.strip() for line in lines)


def _sniff(header_line: str) -> str:
    """The delimiter used most in the header line (quoted names ignored); comma when none."""
    unquoted = _QUOTED.sub("", header_line)
    return max(_DELIMITERS, key=unquoted.count)


def _next_record(reader: Any) -> list[str]:
    try:
        return next(reader, [])
    except csv.Error as exc:
        raise ImportRefused(f"The header row is not valid CSV: {exc}.") from exc


def _columns(header: list[str], phone_column: str) -> _Columns:
    names = [name.strip() for name in header]
    keys = [name.casefold() for name in names]
    seen: set[str] = set()
    for name, key in zip(names, keys, strict=True):
        if key and key in seen:
            raise ImportRefused(f"The column {name!r} appears twice in the header.")
        seen.add(key)
    wanted = phone_column.strip().casefold()
    if wanted not in keys:
        found = ", ".join(repr(name) for name in names if name) or "none"
        raise ImportRefused(
            f"The header has no {phone_column.strip()!r} column (columns found: {found})."
        )
    phone = keys.index(wanted)
    external_id = keys.index(_ID_COLUMN) if _ID_COLUMN in keys and wanted != _ID_COLUMN else None
    # Further numbers of the same person: "<phone column>_2", "_3", ... tried in that order.
    numbered = {
        int(key[len(wanted) + 1 :]): index
        for index, key in enumerate(keys)
        if key.startswith(wanted + "_") and key[len(wanted) + 1 :].isdigit()
    }
    alternates = tuple(numbered[n] for n in sorted(numbered) if n >= 2)
    variables = tuple(
        (name, index)
        for index, name in enumerate(names)
        # A column without a name cannot become a variable an agent could refer to.
        if name and index not in (phone, external_id, *alternates)
    )
    return _Columns(
        phone=phone, external_id=external_id, variables=variables, alternates=alternates
    )


# --- rows ---------------------------------------------------------------------------------------


def _batches(
    reader: Any, columns: _Columns, default_region: str, batch_size: int
) -> Iterator[ParsedBatch]:
    contacts: list[ParsedContact] = []
    errors: list[RowError] = []
    in_batch: set[str] = set()
    row = 1
    try:
        for row, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            parsed = _parse_row(row, record, columns, default_region)
            if isinstance(parsed, RowError):
                errors.append(parsed)
            elif parsed.e164 in in_batch:
                errors.append(RowError(row, _clip(parsed.raw), "duplicate"))
            else:
                in_batch.add(parsed.e164)
                contacts.append(parsed)
            if len(contacts) + len(errors) >= batch_size:
                yield ParsedBatch(len(contacts) + len(errors), contacts, errors)
                contacts, errors, in_batch = [], [], set()
    except csv.Error as exc:
        raise ImportRefused(f"Row {row + 1} is not valid CSV: {exc}.") from exc
    if contacts or errors:
        yield ParsedBatch(len(contacts) + len(errors), contacts, errors)


def _parse_row(
    row: int, record: list[str], columns: _Columns, default_region: str
) -> ParsedContact | RowError:
    raw = _cell(record, columns.phone)
    try:
        phone = normalize(raw, default_region)
    except PhoneRejected as exc:
        return RowError(row, _clip(raw), exc.reason)
    return ParsedContact(
        row=row,
        raw=raw,
        e164=phone.e164,
        time_zones=phone.time_zones,
        external_id=_external_id(row, record, columns),
        dynamic_variables={name: _cell(record, index) for name, index in columns.variables},
        alternates=_alternates(record, columns, default_region, phone.e164),
    )


def _alternates(
    record: list[str], columns: _Columns, default_region: str, primary: str
) -> tuple[str, ...]:
    """The row's further numbers that are callable; empty or unusable cells are left out."""
    found: list[str] = []
    for index in columns.alternates:
        try:
            e164 = normalize(_cell(record, index), default_region).e164
        except PhoneRejected:
            continue
        if e164 != primary and e164 not in found:
            found.append(e164)
    return tuple(found)


def _external_id(row: int, record: list[str], columns: _Columns) -> str | None:
    if columns.external_id is None:
        return None
    value = _cell(record, columns.external_id).strip()
    if len(value) > _MAX_EXTERNAL_ID_CHARS:
        raise ImportRefused(
            f"Row {row}: the id is longer than {_MAX_EXTERNAL_ID_CHARS} characters."
        )
    return value or None


def _cell(record: list[str], index: int) -> str:
    # Short rows are common in hand-edited files: missing trailing cells read as empty.
    return record[index] if index < len(record) else ""


def _clip(value: str) -> str:
    value = value.strip()
    return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"


def _reject(batch: ParsedBatch, numbers: Collection[str], reason: str) -> ParsedBatch:
    """Reject, with ``reason``, the contacts whose number is in ``numbers``."""
    if not numbers:
        return batch
    contacts = [contact for contact in batch.contacts if contact.e164 not in numbers]
    rejected = [
        RowError(contact.row, _clip(contact.raw), reason)
        for contact in batch.contacts
        if contact.e164 in numbers
    ]
    errors = sorted([*batch.errors, *rejected], key=lambda error: error.row)
    return ParsedBatch(batch.rows, contacts, errors)


def _reminder_times(
    contacts: list[ParsedContact], default_timezone: str
) -> tuple[dict[str, datetime], set[str]]:
    """A ``call_at`` column makes each row a reminder: its first call is not before that time."""
    times: dict[str, datetime] = {}
    bad: set[str] = set()
    for contact in contacts:
        raw = contact.dynamic_variables.get(CALL_AT_COLUMN, "").strip()
        if not raw:
            continue
        try:
            times[contact.e164] = parse_call_at(raw, contact.time_zones, default_timezone)
        except BadCallAt:
            bad.add(contact.e164)
    return times, bad


# --- database -----------------------------------------------------------------------------------


async def _prepare_campaign(session: AsyncSession, campaign_id: str) -> str:
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


async def _insert_new(
    session: AsyncSession,
    dialect: str,
    campaign_id: str,
    contacts: list[ParsedContact],
    due: datetime,
    reminders: dict[str, datetime] | None = None,
) -> set[str]:
    """Insert the contacts whose number the campaign does not have yet; return their numbers.

    The unique index answers "is this number already in the campaign?" row by row. Selecting the
    batch's numbers first would depend on the planner, and without fresh statistics (a new or
    fast-growing table) PostgreSQL scans the whole campaign for every batch.
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


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


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
