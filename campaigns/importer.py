"""Streaming CSV intake: contacts in, a row-level report out.

The file is read in chunks, decoded incrementally and parsed in batches, so memory depends on the
batch size, not on the file. The same steps parse every file: records in batches (``_open``), their
numbers checked (``normalize_many``), contacts and row errors made from both (``_assemble``).
``parse_batches`` runs them one after the other for the dry run and small imports; a large import
runs the number checks in a process pool, a few batches ahead of the one being stored.

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
import functools
import io
import itertools
import multiprocessing
import os
import re
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from campaigns import staged_imports
from campaigns.clock import utcnow
from campaigns.dnc import blocked_numbers
from campaigns.events import ContactsDue, emit
from campaigns.ids import new_id
from campaigns.models import Campaign, Contact, ContactState
from campaigns.phones import (
    DEFAULT_NUMBER_TYPES,
    Normalized,
    Phone,
    normalize,
    normalize_many,
    rejection_of,
)
from campaigns.reminders import BadCallAt, parse_call_at
from campaigns.sqlutil import dialect_name

DEFAULT_BATCH_SIZE = 1_000
# The report keeps the first errors only, so a file of a million bad rows gives a bounded report;
# the counts stay exact.
MAX_REPORTED_ERRORS = 1_000

_CHUNK_BYTES = 64 * 1024
# A "line" this long means the file is not a CSV (or has no line breaks at all): refuse it rather
# than buffer it.
_MAX_LINE_CHARS = 1024 * 1024
_MAX_VALUE_CHARS = 100  # of a rejected cell, echoed in the report
# PostgreSQL stores no NUL in text (and SQLite would keep a value the other refuses): a row with a
# NUL anywhere is refused, on both, with the reason nul_byte.
_NUL = "\x00"
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
# Below this many bytes a file is parsed in a thread: starting processes would cost more than the
# parsing (about 40 ms per process against roughly 25 us per row, 60 bytes a row).
POOL_MIN_BYTES = 4 * 1024**2
# Batches read ahead of the one being stored, per parsing process: enough to keep every process
# busy while the database works, few enough that memory stays a few batches.
_READ_AHEAD_PER_PROCESS = 2
# SQLite allows 32766 variables per statement: 16 columns a row leave room for 2047 rows.
_SQLITE_ROWS_PER_STATEMENT = 512
# Each import transaction's own staging table for COPY (PostgreSQL); dropped at commit.
_STAGING_TABLE = "contacts_import_staging"


class ImportRefused(ValueError):
    """The whole file is refused (nothing is imported); the message is meant for the user."""


class CampaignNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    value: str
    # missing | unparseable | invalid | premium_rate | number_type_not_allowed | service_code |
    # extension | nul_byte | duplicate | dnc | invalid_call_at
    reason: str
    number_type: str | None = None  # the number's type, when it is the reason

    def to_dict(self) -> dict[str, Any]:
        found = {"row": self.row, "value": self.value, "reason": self.reason}
        if self.number_type is not None:
            found["number_type"] = self.number_type
        return found


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

    def add_late_duplicates(self, rows: list[tuple[int, str]]) -> None:
        """Contacts counted as accepted whose number another request stored first."""
        self.accepted -= len(rows)
        self.rejected += len(rows)
        room = self.max_errors - len(self.errors)
        late = [RowError(row, _clip(raw), "duplicate") for row, raw in sorted(rows)]
        self.errors.extend(late[: max(room, 0)])

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
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> Iterator[ParsedBatch]:
    """Parse ``source`` into batches of at most ``batch_size`` rows.

    Numbers repeated inside a batch are rejected here; repeats across batches (and uploads) are the
    caller's to find, since only the caller knows what was accepted before. Raises ImportRefused,
    possibly after some batches were yielded (a bad byte late in the file). Numbers whose type is
    not in ``number_types`` are rejected.
    """
    columns, records = _open(source, phone_column, batch_size)
    normalize_one = _normalizer(number_types)
    for batch in records:
        cells = _cells(batch, columns)
        yield _assemble(batch, normalize_many(cells, default_region, normalize_one), columns)


def _normalizer(number_types: Collection[str]) -> Callable[[str | None, str], Phone]:
    # normalize is looked up here, at the start of a parse, so a stand-in set on this module
    # (tests) is the one used.
    if number_types == DEFAULT_NUMBER_TYPES:
        return normalize
    return functools.partial(normalize, number_types=frozenset(number_types))


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
    processes: int | None = None,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> ImportReport:
    """Add the file's contacts to a campaign: all valid rows, or nothing.

    One transaction on PostgreSQL; on SQLite, short ones through a staging table, so that other
    requests and the dispatcher get the database while a large file is stored (staged_imports).

    Numbers are parsed in ``processes`` worker processes while earlier batches are stored; by
    default one per CPU for a file of POOL_MIN_BYTES or more whose size is known (a seekable
    source), and none (a thread) otherwise. The report does not depend on it.

    Numbers whose type is not in ``number_types`` (the campaign's choice) are rejected.

    Raises ImportRefused (nothing imported) for a file that cannot be read as a contact list, and
    CampaignNotFound for an unknown campaign.
    """
    if next_attempt_at is not None and next_attempt_at.tzinfo is None:
        raise ValueError("next_attempt_at must be timezone-aware")
    due = next_attempt_at or utcnow()
    if processes is None:
        processes = _automatic_processes(source)
    parsing = functools.partial(
        _parsed_batches,
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
        await _prepare_campaign(session, campaign_id)
        connection = await session.connection()
        store = _ContactStore(connection.dialect, campaign_id, due)
        async with parsing() as next_batch:
            while (parsed := await next_batch()) is not None:
                parsed = await _checked(session, campaign_id, parsed, default_timezone)
                inserted = await store.insert_new(connection, parsed.contacts, parsed.reminders)
                already_there = {contact.e164 for contact in parsed.contacts} - inserted
                report.add(_reject(parsed.batch, already_there, "duplicate"))
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
    parsed = _reject(parsed, await blocked_numbers(session, campaign_id, numbers), "dnc")
    reminders, late = _reminder_times(parsed.contacts, default_timezone)
    return _Checked(_reject(parsed, late, "invalid_call_at"), reminders)


async def _import_staged(
    sessionmaker: async_sessionmaker[AsyncSession],
    campaign_id: str,
    due: datetime,
    default_timezone: str,
    parsing: Callable[[], Any],
) -> ImportReport:
    """SQLite: each batch staged in a transaction of its own, then published (staged_imports)."""
    async with sessionmaker.begin() as session:
        await _prepare_campaign(session, campaign_id)
        run_id = await staged_imports.open_run(session, staged_imports.CONTACTS, campaign_id)
        dialect = (await session.connection()).dialect
    report = ImportReport()
    store = _ContactStore(dialect, campaign_id, due)
    try:
        async with parsing() as next_batch:
            while (parsed := await next_batch()) is not None:
                async with sessionmaker.begin() as session:
                    await staged_imports.touch(session, run_id)
                    checked = await _checked(session, campaign_id, parsed, default_timezone)
                    numbers = [contact.e164 for contact in checked.contacts]
                    there = await _numbers_in_campaign(session, campaign_id, numbers)
                    batch = _reject(checked.batch, there, "duplicate")
                    staged = await store.stage(
                        await session.connection(), run_id, batch.contacts, checked.reminders
                    )
                    repeated = {contact.e164 for contact in batch.contacts} - staged
                    report.add(_reject(batch, repeated, "duplicate"))
        await staged_imports.decide(sessionmaker, run_id)
    except BaseException:
        with suppress(Exception):
            await staged_imports.discard(sessionmaker, run_id)
        raise
    published = await staged_imports.publish(sessionmaker, run_id)
    report.add_late_duplicates(published.raced)
    return report


async def _numbers_in_campaign(
    session: AsyncSession, campaign_id: str, numbers: list[str]
) -> set[str]:
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


def _automatic_processes(source: BinaryIO) -> int:
    size = _remaining_bytes(source)
    if size is None or size < POOL_MIN_BYTES:
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _remaining_bytes(source: BinaryIO) -> int | None:
    try:
        if not source.seekable():
            return None
        here = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


@asynccontextmanager
async def _parsed_batches(
    source: BinaryIO,
    default_region: str,
    phone_column: str,
    batch_size: int,
    processes: int,
    number_types: frozenset[str] = DEFAULT_NUMBER_TYPES,
) -> AsyncIterator[Callable[[], Any]]:
    """An awaitable "next parsed batch, or None at the end", in file order.

    Without processes, a thread parses batch after batch as they are asked for (decoding, CSV and
    phonenumbers are CPU work that must not hold up the event loop). With processes, a reader
    keeps a few batches ahead: it reads records in a thread and hands each batch's numbers to the
    pool, so parsing runs on every core while the caller stores the batches before.
    """
    if processes <= 0:
        batches = parse_batches(
            source,
            default_region=default_region,
            phone_column=phone_column,
            batch_size=batch_size,
            number_types=number_types,
        )
        yield lambda: asyncio.to_thread(next, batches, None)
        return
    loop = asyncio.get_running_loop()
    # Spawned, not forked: this process has threads (the driver's, asyncio's) whose locks a fork
    # could copy mid-use.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    ahead: asyncio.Queue[tuple[list[_Record], Future[list[Normalized]]] | BaseException | None]
    ahead = asyncio.Queue(maxsize=processes * _READ_AHEAD_PER_PROCESS)
    columns_known: asyncio.Future[_Columns] = loop.create_future()

    async def read() -> None:
        try:
            columns, records = await asyncio.to_thread(_open, source, phone_column, batch_size)
            columns_known.set_result(columns)
            while (batch := await asyncio.to_thread(next, records, None)) is not None:
                cells = _cells(batch, columns)
                found = pool.submit(
                    normalize_many, cells, default_region, number_types=number_types
                )
                await ahead.put((batch, found))
            await ahead.put(None)
        except Exception as exc:  # handed over in file order, after the batches read before it
            await ahead.put(exc)

    async def next_batch() -> ParsedBatch | None:
        item = await ahead.get()
        if item is None:
            await ahead.put(None)  # asked again after the end: still the end
            return None
        if isinstance(item, BaseException):
            raise item
        batch, normalized = item
        found = await asyncio.wrap_future(normalized)
        return await asyncio.to_thread(_assemble, batch, found, columns_known.result())

    reader = asyncio.create_task(read())
    try:
        yield next_batch
    finally:
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


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
    if any(_NUL in name for name in header):
        # Column names become the variables' names, which no database stores with a NUL.
        raise ImportRefused("The header contains a NUL byte: this does not look like a CSV file.")
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


# A data record with its spreadsheet row number.
_Record = tuple[int, list[str]]


def _open(
    source: BinaryIO, phone_column: str, batch_size: int
) -> tuple[_Columns, Iterator[list[_Record]]]:
    """The header's columns, and the data records in batches (blank records left out)."""
    lines = _decoded_lines(source)
    first_line = next(lines, None)
    if first_line is None or not first_line.strip():
        if first_line is None or _only_blank(lines):
            raise ImportRefused("The file is empty.")
        raise ImportRefused("The first line is blank: it must be the header (the column names).")
    reader = csv.reader(itertools.chain([first_line], lines), delimiter=_sniff(first_line))
    columns = _columns(_next_record(reader), phone_column)
    return columns, _record_batches(reader, batch_size)


def _record_batches(reader: Any, batch_size: int) -> Iterator[list[_Record]]:
    batch: list[_Record] = []
    data_rows = 0
    row = 1
    failure: Exception | None = None
    try:
        for row, record in enumerate(reader, start=2):
            if not "".join(record).strip():  # every cell blank
                continue
            batch.append((row, record))
            if len(batch) >= batch_size:
                data_rows += len(batch)
                yield batch
                batch = []
    except (csv.Error, ImportRefused) as exc:
        failure = exc
    # The rows read before a bad one are still handed out first: a problem in them (an overlong
    # id) is the one to report, being the first in the file.
    if batch:
        data_rows += len(batch)
        yield batch
    if isinstance(failure, csv.Error):
        raise ImportRefused(f"Row {row + 1} is not valid CSV: {failure}.") from failure
    if failure is not None:
        raise failure
    if data_rows == 0:
        raise ImportRefused("The file has a header but no data rows.")


def _cells(batch: list[_Record], columns: _Columns) -> list[str]:
    """The numbers to parse: each record's phone cell, then its alternate numbers' cells."""
    wanted = (columns.phone, *columns.alternates)
    return [_cell(record, index) for _, record in batch for index in wanted]


def _assemble(batch: list[_Record], found: list[Normalized], columns: _Columns) -> ParsedBatch:
    """Contacts and row errors from records and their parsed numbers (as ``_cells`` lists them)."""
    contacts: list[ParsedContact] = []
    errors: list[RowError] = []
    in_batch: set[str] = set()
    width = 1 + len(columns.alternates)
    for position, (row, record) in enumerate(batch):
        raw = _cell(record, columns.phone)
        first = position * width
        phone = found[first]
        # One scan of the joined row in C: any cell, the phone's included.
        if _NUL in "".join(record):
            errors.append(RowError(row, _clip(raw.replace(_NUL, "")), "nul_byte"))
            continue
        if isinstance(phone, str):
            errors.append(RowError(row, _clip(raw), *rejection_of(phone)))
            continue
        e164, time_zones = phone
        contact = ParsedContact(
            row=row,
            raw=raw,
            e164=e164,
            time_zones=time_zones,
            external_id=_external_id(row, record, columns),
            dynamic_variables={name: _cell(record, index) for name, index in columns.variables},
            alternates=_alternates(found[first + 1 : first + width], e164),
        )
        if e164 in in_batch:
            errors.append(RowError(row, _clip(raw), "duplicate"))
        else:
            in_batch.add(e164)
            contacts.append(contact)
    return ParsedBatch(len(batch), contacts, errors)


def _alternates(found: list[Normalized], primary: str) -> tuple[str, ...]:
    """The row's further numbers that are callable; empty or unusable cells are left out."""
    numbers: list[str] = []
    for phone in found:
        if isinstance(phone, str):
            continue
        e164 = phone[0]
        if e164 != primary and e164 not in numbers:
            numbers.append(e164)
    return tuple(numbers)


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


# The columns a file's contact fills, in the order _ContactStore builds its rows; the others keep
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
# and the phone cell as written; publishing fills in the rest (staged_imports).
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


class _ContactStore:
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
        self._staging_ready = False
        self._sqlite_inserts: dict[tuple[str, int], str] = {}
        listed = ", ".join(_STORED_COLUMNS)
        self._move_sql = (
            f"WITH batch AS (DELETE FROM {_STAGING_TABLE} RETURNING {listed}) "
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
        if not self._staging_ready:
            await driver.execute(
                f"CREATE TEMPORARY TABLE {_STAGING_TABLE} "
                "(LIKE contacts INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            self._staging_ready = True
        await driver.copy_records_to_table(_STAGING_TABLE, records=rows, columns=_STORED_COLUMNS)
        return {record[0] for record in await driver.fetch(self._move_sql)}


def _as_is(value: Any) -> Any:
    return value
