"""CSV intake, against SQLite, or PostgreSQL when CALLBRIDGE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any, BinaryIO, cast

import phonenumbers
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridge.migrate import upgrade_to_head
from campaigns.clock import utcnow
from campaigns.db import make_engine, make_sessionmaker
from campaigns.ids import new_id
from campaigns.intake import call_at, parsing, staging, store
from campaigns.intake import rows as intake_rows
from campaigns.intake.contacts import dry_run, import_contacts
from campaigns.intake.errors import CampaignNotFound, ImportRefused
from campaigns.intake.report import ImportReport
from campaigns.intake.rows import parse_batches
from campaigns.models import (
    Base,
    Campaign,
    Contact,
    ImportRun,
    StagedContact,
    StagedDncEntry,
)
from campaigns.phones import Phone

Sessionmaker = async_sessionmaker[AsyncSession]


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # database_url (conftest.py): a SQLite file in tmp_path, or a fresh database on the server
    # named by CALLBRIDGE_TEST_DATABASE_URL.
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


@pytest.fixture
def sm(engine: AsyncEngine) -> Sessionmaker:
    return make_sessionmaker(engine)


async def new_campaign(sm: Sessionmaker) -> str:
    campaign_id = new_id("cmp")
    async with sm.begin() as session:
        session.add(Campaign(id=campaign_id, name="intake", default_region="US"))
    return campaign_id


@pytest.fixture
async def campaign_id(sm: Sessionmaker) -> str:
    return await new_campaign(sm)


async def contacts_of(sm: Sessionmaker, campaign_id: str) -> list[Contact]:
    async with sm() as session:
        result = await session.scalars(
            select(Contact).where(Contact.campaign_id == campaign_id).order_by(Contact.row_number)
        )
        return list(result)


async def count_contacts(sm: Sessionmaker) -> int:
    async with sm() as session:
        return int(await session.scalar(select(func.count()).select_from(Contact)) or 0)


async def staged_leftovers(sm: Sessionmaker) -> int:
    """Rows an import left in its staging tables (SQLite stages large imports)."""
    async with sm() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table))
            for table in (ImportRun, StagedContact, StagedDncEntry)
        ]
    return sum(int(count or 0) for count in counts)


def csv_file(text: str, *, bom: bool = False) -> io.BytesIO:
    return io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + text.encode())


async def run_import(sm: Sessionmaker, campaign_id: str, source: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("default_region", "US")
    return (await import_contacts(sm, campaign_id, source, **kwargs)).to_dict()


class TrickleReader(io.RawIOBase):
    """Hands out a few bytes per read, splitting UTF-8 sequences and CRLF pairs across chunks."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data[self._pos : self._pos + self._step]
        self._pos += len(chunk)
        return chunk


class GeneratedCsv(io.RawIOBase):
    """A CSV of ``rows`` distinct contacts made while it is read: never whole in memory."""

    def __init__(self, rows: int) -> None:
        self._lines = self._make(rows)
        self._pending = b""

    @staticmethod
    def _make(rows: int) -> Iterator[bytes]:
        yield b"phone_number,id,first_name,note\n"
        for i in range(rows):
            yield b'+1 %010d,c%d,Person %d,"hello, world"\n' % (i, i, i)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        parts, size = [self._pending], len(self._pending)
        while size < len(buffer) and (line := next(self._lines, None)) is not None:
            parts.append(line)
            size += len(line)
        data = b"".join(parts)
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        self._pending = data[size:]
        return size


def trickle(data: bytes, step: int) -> BinaryIO:
    return cast(BinaryIO, TrickleReader(data, step))


def generated_csv(rows: int) -> BinaryIO:
    return cast(BinaryIO, GeneratedCsv(rows))


def cheap_normalize(raw: str | None, _region: str) -> Phone:
    # Memory tests measure the streaming, not phonenumbers (which keeps no per-number state);
    # a stand-in keeps a 200k-row run within seconds. GeneratedCsv writes "+1 0000000042".
    return Phone((raw or "").replace(" ", ""), ("America/New_York",))


# --- contacts and their fields ----------------------------------------------------------------


async def test_rows_become_contacts_with_id_and_variables(sm: Sessionmaker, campaign_id: str):
    due = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    source = csv_file(
        "phone_number,id,first_name,appointment,notes\n"
        "+1 415 555 0100,crm-1,Ava,Monday 9:00,\n"
        "(212) 555-0160, crm-2 ,Ben,Tuesday 10:30,call after 5\n"
        "312-555-0171,,Chloé,,\n"
    )
    report = await run_import(sm, campaign_id, source, next_attempt_at=due)
    assert report == {"rows": 3, "accepted": 3, "rejected": 0, "errors": []}

    ava, ben, chloe = await contacts_of(sm, campaign_id)
    assert (ava.phone_number, ben.phone_number, chloe.phone_number) == (
        "+14155550100",
        "+12125550160",
        "+13125550171",
    )
    assert ava.time_zones == ["America/Los_Angeles"]
    assert chloe.time_zones == ["America/Chicago"]
    assert (ava.external_id, ben.external_id, chloe.external_id) == ("crm-1", "crm-2", None)
    assert ava.dynamic_variables == {"first_name": "Ava", "appointment": "Monday 9:00", "notes": ""}
    assert chloe.dynamic_variables == {"first_name": "Chloé", "appointment": "", "notes": ""}
    assert [c.row_number for c in (ava, ben, chloe)] == [2, 3, 4]
    assert {c.state for c in (ava, ben, chloe)} == {"pending"}
    assert {c.next_attempt_at for c in (ava, ben, chloe)} == {due}
    assert all(c.id.startswith("ct_") for c in (ava, ben, chloe))


async def test_next_attempt_defaults_to_now(sm: Sessionmaker, campaign_id: str):
    before = utcnow()
    await run_import(sm, campaign_id, csv_file("phone_number\n+14155550100\n"))
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.next_attempt_at is not None
    assert before <= contact.next_attempt_at <= utcnow()


async def test_naive_next_attempt_is_refused_before_reading(sm: Sessionmaker, campaign_id: str):
    with pytest.raises(ValueError, match="timezone-aware"):
        await run_import(
            sm,
            campaign_id,
            csv_file("phone_number\n+14155550100\n"),
            next_attempt_at=datetime.now(),
        )


async def test_custom_phone_column_matches_loosely(sm: Sessionmaker, campaign_id: str):
    source = csv_file(" Mobile ,Name\n+1 415 555 0100,Ava\n")
    report = await run_import(sm, campaign_id, source, phone_column="mobile")
    assert report["accepted"] == 1
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.phone_number == "+14155550100"
    assert contact.dynamic_variables == {"Name": "Ava"}


async def test_phone_column_name_is_case_insensitive(sm: Sessionmaker, campaign_id: str):
    report = await run_import(sm, campaign_id, csv_file("Phone_Number,ID\n4155550100,x\n"))
    assert report["accepted"] == 1
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.external_id == "x"
    assert contact.dynamic_variables == {}


async def test_short_rows_read_as_empty_cells(sm: Sessionmaker, campaign_id: str):
    await run_import(sm, campaign_id, csv_file("phone_number,a,b\n4155550100,1\n"))
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.dynamic_variables == {"a": "1", "b": ""}


# --- encodings, delimiters, quoting -----------------------------------------------------------


async def test_utf8_bom_is_dropped(sm: Sessionmaker, campaign_id: str):
    source = csv_file("phone_number,first_name\n4155550100,Zoë\n", bom=True)
    assert (await run_import(sm, campaign_id, source))["accepted"] == 1
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.dynamic_variables == {"first_name": "Zoë"}


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
async def test_delimiter_is_detected_from_the_header(
    sm: Sessionmaker, campaign_id: str, delimiter: str
):
    header = delimiter.join(["phone_number", "id", "city"])
    # The quoted city holds every candidate delimiter but the tab.
    row = delimiter.join(["+1 415 555 0100", "a", '"Paris, France; 75001"'])
    text = f"{header}\n{row}\n"
    assert (await run_import(sm, campaign_id, csv_file(text)))["accepted"] == 1
    [contact] = await contacts_of(sm, campaign_id)
    assert contact.external_id == "a"
    assert contact.dynamic_variables == {"city": "Paris, France; 75001"}


async def test_quoted_cells_with_newlines_keep_spreadsheet_row_numbers(
    sm: Sessionmaker, campaign_id: str
):
    source = csv_file(
        "phone_number,note\r\n"
        '4155550100,"first line\r\nsecond line"\r\n'
        '4155550101,"a ""quoted"" word; and, delimiters"\r\n'
        "bad,\r\n"
    )
    report = await run_import(sm, campaign_id, source)
    # Row 4 of the spreadsheet although it is line 5 of the file.
    assert report["errors"] == [{"row": 4, "value": "bad", "reason": "unparseable"}]
    first, second = await contacts_of(sm, campaign_id)
    assert first.dynamic_variables == {"note": "first line\r\nsecond line"}
    assert (first.row_number, second.row_number) == (2, 3)
    assert second.dynamic_variables == {"note": 'a "quoted" word; and, delimiters'}


async def test_blank_records_keep_their_row_number_but_are_not_counted(
    sm: Sessionmaker, campaign_id: str
):
    source = csv_file("phone_number,a\n4155550100,x\n\n,\n \t,\nnope,y\n4155550101,z")
    report = await run_import(sm, campaign_id, source)
    assert report == {
        "rows": 3,
        "accepted": 2,
        "rejected": 1,
        "errors": [{"row": 6, "value": "nope", "reason": "unparseable"}],
    }
    assert [c.row_number for c in await contacts_of(sm, campaign_id)] == [2, 7]


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_chunk_boundaries_do_not_matter(step: int):
    data = '\ufeffphone_number;name\r\n4155550100;Zoë 😀\r\n"4155550101";"a\r\nb"\r\n'.encode()
    report = dry_run(trickle(data, step), default_region="US")
    assert report.to_dict() == {"rows": 2, "accepted": 2, "rejected": 0, "errors": []}
    [batch] = parse_batches(trickle(data, step), default_region="US")
    names = [contact.dynamic_variables["name"] for contact in batch.contacts]
    assert names == ["Zoë 😀", "a\r\nb"]


def test_old_mac_line_endings():
    report = dry_run(csv_file("phone_number\r4155550100\r4155550101\r"), default_region="US")
    assert report.accepted == 2


async def test_spooled_temporary_file_is_a_valid_source(sm: Sessionmaker, campaign_id: str):
    with tempfile.SpooledTemporaryFile(max_size=16) as spool:
        spool.write(b"phone_number\n4155550100\n4155550101\n")
        spool.seek(0)
        assert (await run_import(sm, campaign_id, spool))["accepted"] == 2


# --- rejected rows ----------------------------------------------------------------------------


async def test_every_reason_code_with_its_row(sm: Sessionmaker, campaign_id: str):
    source = csv_file(
        "id,phone_number\n"
        "a,+1 415 555 0100\n"
        "b,\n"
        "c,not a number\n"
        "d,(415) 055-0142\n"
        "e,+1 900 200 1234\n"
        "f,415-555-0100\n"
        "g,+1 415 555 0101\n"
    )
    report = await run_import(sm, campaign_id, source)
    assert report == {
        "rows": 7,
        "accepted": 2,
        "rejected": 5,
        "errors": [
            {"row": 3, "value": "", "reason": "missing"},
            {"row": 4, "value": "not a number", "reason": "unparseable"},
            {"row": 5, "value": "(415) 055-0142", "reason": "invalid"},
            {"row": 6, "value": "+1 900 200 1234", "reason": "premium_rate"},
            {"row": 7, "value": "415-555-0100", "reason": "duplicate"},
        ],
    }
    assert [c.external_id for c in await contacts_of(sm, campaign_id)] == ["a", "g"]


async def test_duplicates_across_batches_and_uploads(sm: Sessionmaker, campaign_id: str):
    first = await run_import(
        sm, campaign_id, csv_file("phone_number\n4155550100\n4155550101\n4155550102\n")
    )
    assert first["accepted"] == 3
    # Batches of 2: row 5 repeats a number from the previous batch, row 3 one from the
    # previous upload, and row 6 one from its own batch.
    second = await run_import(
        sm,
        campaign_id,
        csv_file("phone_number\n4155550103\n+1 415 555 0101\n4155550104\n4155550103\n4155550104\n"),
        batch_size=2,
    )
    assert second == {
        "rows": 5,
        "accepted": 2,
        "rejected": 3,
        "errors": [
            {"row": 3, "value": "+1 415 555 0101", "reason": "duplicate"},
            {"row": 5, "value": "4155550103", "reason": "duplicate"},
            {"row": 6, "value": "4155550104", "reason": "duplicate"},
        ],
    }
    assert len(await contacts_of(sm, campaign_id)) == 5


async def test_same_number_in_two_campaigns_is_no_duplicate(sm: Sessionmaker, campaign_id: str):
    other = await new_campaign(sm)
    for target in (campaign_id, other):
        report = await run_import(sm, target, csv_file("phone_number\n4155550100\n"))
        assert report["accepted"] == 1


async def test_concurrent_uploads_to_one_campaign_take_turns(sm: Sessionmaker, campaign_id: str):
    text = "phone_number\n" + "".join(f"41555501{i:02d}\n" for i in range(60))
    reports = await asyncio.gather(
        *(run_import(sm, campaign_id, csv_file(text), batch_size=10) for _ in range(2))
    )
    assert sorted(report["accepted"] for report in reports) == [0, 60]
    assert len(await contacts_of(sm, campaign_id)) == 60


def test_report_keeps_counts_exact_but_bounds_its_error_list():
    source = csv_file("phone_number\n" + "x\n" * 50)
    report = ImportReport(max_errors=10)
    for batch in parse_batches(source, default_region="US", batch_size=7):
        report.add(batch)
    assert (report.rows, report.rejected, len(report.errors)) == (50, 50, 10)
    assert [error.row for error in report.errors] == list(range(2, 12))


def test_long_rejected_values_are_clipped_in_the_report():
    report = dry_run(csv_file("phone_number\n" + "9" * 500 + "\n"), default_region="US")
    [error] = report.errors
    assert len(error.value) == 100 and error.value.endswith("…")


# --- refused files: nothing is imported -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\ufeff", "empty"),
        ("\n\n  \n", "empty"),
        ("\n4155550100\n", "first line is blank"),
        ("phone_number,id\n", "no data rows"),
        ("phone_number\n\n,\n", "no data rows"),
        ("name,mobile\nAva,4155550100\n", "no 'phone_number' column"),
        ("phone_number,Name,name\n4155550100,a,b\n", "appears twice"),
    ],
)
async def test_unusable_files_are_refused(
    sm: Sessionmaker, campaign_id: str, text: str, message: str
):
    with pytest.raises(ImportRefused, match=message):
        await import_contacts(sm, campaign_id, csv_file(text), default_region="US")
    with pytest.raises(ImportRefused, match=message):
        dry_run(csv_file(text), default_region="US")
    assert await count_contacts(sm) == 0


async def test_missing_column_message_names_the_columns_found(sm: Sessionmaker, campaign_id: str):
    with pytest.raises(ImportRefused) as refused:
        await run_import(sm, campaign_id, csv_file("name;tel\nAva;4155550100\n"))
    assert str(refused.value) == (
        "The header has no 'phone_number' column (columns found: 'name', 'tel')."
    )


async def test_invalid_utf8_late_in_the_file_rolls_everything_back(
    sm: Sessionmaker, campaign_id: str
):
    rows = [f"+1 212 555 {i:04d},Person {i}\n".encode() for i in range(3_000)]
    rows[2_500] = b"+1 212 555 9999,Fran\xe7ois\n"  # Latin-1, as old spreadsheets save it
    source = io.BytesIO(b"phone_number,name\n" + b"".join(rows))
    with pytest.raises(ImportRefused, match="not UTF-8") as refused:
        await run_import(sm, campaign_id, source, batch_size=500)
    # Five batches were inserted before the bad byte was read: all of them are gone.
    assert source.tell() > len(source.getvalue()) // 2
    assert "line 2502" in str(refused.value)
    assert await count_contacts(sm) == 0
    assert await staged_leftovers(sm) == 0


async def test_invalid_utf8_in_the_last_byte_is_refused(sm: Sessionmaker, campaign_id: str):
    source = io.BytesIO(b"phone_number,name\n4155550100,Ren\xc3")
    with pytest.raises(ImportRefused, match="line 2"):
        await run_import(sm, campaign_id, source)
    assert await count_contacts(sm) == 0


async def test_broken_csv_is_refused(sm: Sessionmaker, campaign_id: str):
    # An unclosed quote swallows the rest of the file into one cell, up to the csv field limit.
    source = csv_file('phone_number,note\n4155550100,"never closed\n' + "x,y\n" * 40_000)
    with pytest.raises(ImportRefused, match="Row 2 is not valid CSV"):
        await run_import(sm, campaign_id, source)
    assert await count_contacts(sm) == 0


async def test_an_overlong_id_refuses_the_file(sm: Sessionmaker, campaign_id: str):
    source = csv_file(f"phone_number,id\n4155550100,ok\n4155550101,{'x' * 201}\n")
    with pytest.raises(ImportRefused, match="Row 3: the id"):
        await run_import(sm, campaign_id, source)
    assert await count_contacts(sm) == 0


def test_a_file_without_line_breaks_is_refused():
    with pytest.raises(ImportRefused, match="does not look like a CSV"):
        dry_run(io.BytesIO(b"phone_number," + b"x" * (2 * 1024 * 1024)), default_region="US")


async def test_unknown_campaign(sm: Sessionmaker):
    with pytest.raises(CampaignNotFound):
        await run_import(sm, "cmp_nope", csv_file("phone_number\n4155550100\n"))
    assert await count_contacts(sm) == 0


# --- the event loop and memory ----------------------------------------------------------------


async def test_parsing_runs_off_the_event_loop(
    sm: Sessionmaker, campaign_id: str, monkeypatch: pytest.MonkeyPatch
):
    threads: set[int] = set()
    real_normalize = intake_rows.normalize

    def spying_normalize(raw: str | None, region: str) -> Phone:
        threads.add(threading.get_ident())
        return real_normalize(raw, region)

    monkeypatch.setattr(intake_rows, "normalize", spying_normalize)
    await run_import(sm, campaign_id, csv_file("phone_number\n4155550100\n4155550101\n"))
    assert threads and threading.get_ident() not in threads


def peak_bytes(run: Any) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_parsing_memory_does_not_grow_with_the_file(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(intake_rows, "normalize", cheap_normalize)

    def parse(rows: int) -> None:
        batches = parse_batches(generated_csv(rows), default_region="US")
        assert sum(batch.rows for batch in batches) == rows

    small, large = peak_bytes(lambda: parse(10_000)), peak_bytes(lambda: parse(200_000))
    # 200k rows are ~9 MB of CSV and would be far more as contacts; a batch is a few hundred KB.
    assert large < small * 1.25 + 256 * 1024
    assert large < 4 * 1024 * 1024


async def test_import_memory_does_not_grow_with_the_file(
    sm: Sessionmaker, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(intake_rows, "normalize", cheap_normalize)

    async def load(rows: int) -> int:
        campaign_id = await new_campaign(sm)
        tracemalloc.start()
        try:
            report = await import_contacts(
                sm, campaign_id, generated_csv(rows), default_region="US"
            )
            assert report.accepted == rows
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    await load(1_000)  # warm caches (SQLAlchemy statements, driver) outside the measurement
    small, large = await load(2_000), await load(20_000)
    assert large < small * 1.25 + 512 * 1024


# --- parsing processes ------------------------------------------------------------------------

MIXED = (
    "phone_number,id,name,phone_number_2,call_at\n"
    "+1 415 555 0100,a,Ava,+44 20 7946 0958,\n"
    '(212) 555-0160,b,"Ben\nBrown",212-555-0160,2031-05-06T09:30\n'
    ",,,,\n"
    "not a number,c,Cy,,\n"
    "+49 151 23456789,d,Dora,nope,\n"
    "415-555-0100,e,Ed,,\n"
    "+1 900 200 1234,f,Fay,,\n"
    "+44 7400 123456,g,Gus,+49 30 12345678,yesterday-ish\n"
    "(415) 055-0142,h,Hal,,\n"
    "+1 312 555 0171,i,Ida,+1 312 555 0171,\n"
    "+44 20 7946 0958,j,Jo,,\n"
    "+1 212 555 0160,k,Kim,,\n"
)

_COMPARED = (
    "phone_number",
    "external_id",
    "time_zones",
    "dynamic_variables",
    "alternate_numbers",
    "row_number",
    "state",
    "next_attempt_at",
    "call_at",
    "attempts_made",
    "number_index",
    "failures_on_number",
    "dedupe_scope",
    "idempotency_key",
    "disposition",
    "finished_at",
)


def stored(contacts: list[Contact]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(contact, name) for name in _COMPARED) for contact in contacts]


@pytest.mark.parametrize("batch_size", [3, 1_000])
async def test_parsing_processes_give_the_same_report_and_contacts(
    sm: Sessionmaker, batch_size: int
):
    due = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    results = []
    for processes in (0, 2):
        campaign_id = await new_campaign(sm)
        report = await run_import(
            sm,
            campaign_id,
            csv_file(MIXED),
            batch_size=batch_size,
            processes=processes,
            next_attempt_at=due,
        )
        results.append((report, stored(await contacts_of(sm, campaign_id))))
    assert results[0] == results[1]
    report, contacts = results[0]
    assert [(e["row"], e["reason"]) for e in report["errors"]] == [
        (5, "unparseable"),
        (7, "duplicate"),
        (8, "premium_rate"),
        (9, "invalid_call_at"),
        (10, "invalid"),
        (13, "duplicate"),
    ]
    assert [c[0] for c in contacts] == [
        "+14155550100",
        "+12125550160",
        "+4915123456789",
        "+13125550171",
        "+442079460958",  # another row's alternate number, not a repeat
    ]


async def test_stored_values_match_an_orm_insert(sm: Sessionmaker):
    # The file path writes rows through the driver (executemany, COPY); a list of contacts goes
    # through SQLAlchemy's insert. Both must store the same values.
    due = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    by_file = await new_campaign(sm)
    await run_import(sm, by_file, csv_file(MIXED), next_attempt_at=due)
    by_orm = await new_campaign(sm)
    [parsed] = parse_batches(csv_file(MIXED), default_region="US")
    reminders, late = call_at.reminder_times(parsed.contacts, "UTC")
    parsed = intake_rows.reject(parsed, late, "invalid_call_at")
    async with sm.begin() as session:
        dialect = await store.prepare_campaign(session, by_orm)
        await store.insert_new(session, dialect, by_orm, parsed.contacts, due, reminders)
    from_file, from_orm = await contacts_of(sm, by_file), await contacts_of(sm, by_orm)
    assert stored(from_file) == stored(from_orm)
    assert any(contact.call_at is not None for contact in from_file)
    assert any(contact.alternate_numbers for contact in from_file)
    assert all(contact.created_at is not None for contact in from_file)


async def test_parsing_processes_refuse_files_as_the_thread_does(
    sm: Sessionmaker, campaign_id: str
):
    rows = [f"+1 212 555 {i:04d},Person {i}\n".encode() for i in range(3_000)]
    rows[2_500] = b"+1 212 555 9999,Fran\xe7ois\n"
    files = [
        b"phone_number,name\n" + b"".join(rows),
        b'phone_number,note\n4155550100,"never closed\n' + b"x,y\n" * 40_000,
        # The overlong id comes first in the file, the bad byte later in the same batch.
        f"phone_number,id\n4155550100,{'x' * 201}\n".encode() + b"4155550101,Fran\xe7ois\n",
        b"phone_number,id\n\n,\n",
        b"",
    ]
    for data in files:
        messages = []
        for processes in (0, 2):
            with pytest.raises(ImportRefused) as refused:
                await run_import(
                    sm, campaign_id, io.BytesIO(data), batch_size=500, processes=processes
                )
            messages.append(str(refused.value))
        assert messages[0] == messages[1]
        assert await count_contacts(sm) == 0


async def test_large_seekable_files_are_parsed_in_processes(
    sm: Sessionmaker, campaign_id: str, monkeypatch: pytest.MonkeyPatch
):
    text = "phone_number\n" + "".join(f"41555501{i:02d}\n" for i in range(60))
    expected = dry_run(csv_file(text), default_region="US").to_dict()
    here: list[str] = []
    real_normalize = intake_rows.normalize

    def spying_normalize(raw: str | None, region: str) -> Phone:
        here.append(raw or "")
        return real_normalize(raw, region)

    monkeypatch.setattr(intake_rows, "normalize", spying_normalize)
    monkeypatch.setattr(parsing, "POOL_MIN_BYTES", len(text) - 1)
    assert await run_import(sm, campaign_id, csv_file(text), batch_size=7) == expected
    # Every number was parsed by the pool's processes, none in this one.
    assert here == []


# --- the demo's bundled example ---------------------------------------------------------------


def example_bytes() -> bytes:
    return resources.files("bridge").joinpath("examples/contacts.csv").read_bytes()


def test_bundled_example_covers_every_sandbox_outcome():
    rows = list(csv.DictReader(io.StringIO(example_bytes().decode())))
    assert list(rows[0]) == ["phone_number", "id", "first_name", "appointment"]
    assert 25 <= len(rows) <= 40
    suffixes = set()
    for row in rows:
        try:
            number = phonenumbers.parse(row["phone_number"], "US")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            suffixes.add(number.national_number % 100)
    for first, last in [(0, 59), (60, 69), (70, 79), (80, 84), (85, 89), (90, 94), (95, 99)]:
        assert suffixes & set(range(first, last + 1)), (first, last)


async def test_bundled_example_report_shows_rejections(sm: Sessionmaker, campaign_id: str):
    report = await run_import(sm, campaign_id, io.BytesIO(example_bytes()))
    assert report == dry_run(io.BytesIO(example_bytes()), default_region="US").to_dict()
    reasons = {error["reason"] for error in report["errors"]}
    assert {"invalid", "duplicate"} <= reasons
    assert (report["rows"], report["accepted"], report["rejected"]) == (30, 27, 3)


# --- other work goes on during an import; the file is still all or nothing --------------------


class GatedCsv(io.RawIOBase):
    """Serves a file, and stops half-way until ``go`` is set (``halfway`` tells it got there)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0
        self.halfway, self.go = threading.Event(), threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._pos >= len(self._data) // 2:
            self.halfway.set()
            if not self.go.wait(30):
                raise TimeoutError("the test never let the file go on")
        chunk = self._data[self._pos : self._pos + min(len(buffer), 4096)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


async def test_the_database_answers_while_an_import_is_half_way(sm: Sessionmaker, campaign_id: str):
    """Half-way through a file, other sessions use the database at once (on SQLite too, which
    has one writer), and see none of the file's contacts until it is whole."""
    rows = [f"+1 212 555 {i:04d},Person {i}\n".encode() for i in range(4_000)]
    source = GatedCsv(b"phone_number,name\n" + b"".join(rows))
    importing = asyncio.create_task(run_import(sm, campaign_id, source, batch_size=250))
    try:
        assert await asyncio.to_thread(source.halfway.wait, 30)
        # An import holding the database in one transaction would keep these waiting.
        async with asyncio.timeout(5):
            assert await count_contacts(sm) == 0
            async with sm.begin() as session:
                session.add(Campaign(id=new_id("cmp"), name="meanwhile", default_region="US"))
    finally:
        source.go.set()
    report = await importing
    assert report["accepted"] == 4_000
    assert await count_contacts(sm) == 4_000
    assert await staged_leftovers(sm) == 0


async def abandoned_run(sm: Sessionmaker, campaign_id: str, state: str) -> str:
    """What a process killed mid-import leaves: a run, unheard of for minutes, and its rows."""
    run_id = new_id("imp")
    long_ago = utcnow() - 2 * staging.STALE_AFTER
    async with sm.begin() as session:
        session.add(
            ImportRun(
                id=run_id,
                kind=staging.CONTACTS,
                campaign_id=campaign_id,
                state=state,
                heartbeat_at=long_ago,
            )
        )
        await session.flush()
        session.add_all(
            StagedContact(
                import_id=run_id,
                id=new_id("ct"),
                phone_number=f"+1212555{i:04d}",
                raw=f"212 555 {i:04d}",
                alternate_numbers=[],
                time_zones=["America/New_York"],
                dynamic_variables={"name": f"P{i}"},
                row_number=i + 2,
                next_attempt_at=long_ago,
            )
            for i in range(5_000)
        )
    return run_id


async def test_housekeeping_discards_a_run_that_died_while_staging(
    sm: Sessionmaker, campaign_id: str
):
    await abandoned_run(sm, campaign_id, staging.STAGING)
    # A run still alive is left alone.
    assert await staging.settle_abandoned(sm, utcnow() - 1.5 * staging.STALE_AFTER) == 0
    assert await staged_leftovers(sm) > 0
    assert await staging.settle_abandoned(sm) == 1
    assert await staged_leftovers(sm) == 0
    assert await count_contacts(sm) == 0


async def test_housekeeping_finishes_a_run_that_died_while_publishing(
    sm: Sessionmaker, campaign_id: str
):
    await abandoned_run(sm, campaign_id, staging.PUBLISHING)
    assert await staging.settle_abandoned(sm) == 1
    assert await staged_leftovers(sm) == 0
    contacts = await contacts_of(sm, campaign_id)
    assert len(contacts) == 5_000
    first = contacts[0]
    assert (first.phone_number, first.state, first.row_number) == ("+12125550000", "pending", 2)
    assert (first.dynamic_variables, first.time_zones) == ({"name": "P0"}, ["America/New_York"])


async def test_published_chunks_are_read_through_the_chunk_index(tmp_path):
    """Each chunk statement reads its seq range of the run, not all of the run's rows: through the
    (import_id, phone_number) index SQLite walked the whole run for every chunk, and publishing a
    200 MB file held the database for minutes. (Staging is SQLite's, whatever the suite runs on.)"""
    engine = make_engine(f"sqlite:///{tmp_path / 'plans.db'}")
    try:
        await upgrade_to_head(engine)
        statements = {
            "publish contacts": staging.PUBLISH_CONTACTS,
            "publish dnc": staging.PUBLISH_DNC,
            "delete staged contacts": staging.delete_chunk(StagedContact),
            "delete staged dnc": staging.delete_chunk(StagedDncEntry),
        }
        params = {"run": "imp", "campaign_id": None, "low": 0, "high": 10}
        params |= {"pending": "pending", "now": "2026-01-01 00:00:00"}
        async with engine.connect() as connection:
            for name, statement in statements.items():
                compiled = statement.compile(engine)
                plan = await connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {compiled}",
                    tuple(params[key] for key in compiled.positiontup or ()),
                )
                staged_reads = [step for *_, step in plan if "staged" in step]
                assert staged_reads, name
                for step in staged_reads:
                    assert "_chunk (import_id=? AND seq>? AND seq<?)" in step, (name, step)
    finally:
        await engine.dispose()
