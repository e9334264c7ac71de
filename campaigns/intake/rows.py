"""Rows: records and their checked numbers made into contacts and row errors.

The same steps parse every file: records in batches (``reading.open_records``), their numbers
checked (``phones.normalize_many``), contacts and row errors made from both (``assemble``).
``parse_batches`` runs them one after the other; ``parsing`` runs the number checks in processes
for a large file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from campaigns.intake.errors import ImportRefused
from campaigns.intake.reading import NUL, Columns, Record, cell, open_records
from campaigns.intake.report import RowError, clip
from campaigns.phones import (
    DEFAULT_NUMBER_TYPES,
    Normalized,
    Phone,
    normalize,
    normalize_many,
    rejection_of,
)

DEFAULT_BATCH_SIZE = 1_000
MAX_EXTERNAL_ID_CHARS = 200  # Contact.external_id is String(200)


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
    columns, records = open_records(source, phone_column, batch_size)
    normalize_one = normalizer(number_types)
    for batch in records:
        found = normalize_many(cells(batch, columns), default_region, normalize_one)
        yield assemble(batch, found, columns)


def normalizer(number_types: Collection[str]) -> Callable[[str | None, str], Phone]:
    # normalize is looked up here, at the start of a parse, so a stand-in set on this module
    # (tests) is the one used.
    if number_types == DEFAULT_NUMBER_TYPES:
        return normalize
    return functools.partial(normalize, number_types=frozenset(number_types))


def cells(batch: list[Record], columns: Columns) -> list[str]:
    """The numbers to parse: each record's phone cell, then its alternate numbers' cells."""
    wanted = (columns.phone, *columns.alternates)
    return [cell(record, index) for _, record in batch for index in wanted]


def assemble(batch: list[Record], found: list[Normalized], columns: Columns) -> ParsedBatch:
    """Contacts and row errors from records and their parsed numbers (as ``cells`` lists them)."""
    contacts: list[ParsedContact] = []
    errors: list[RowError] = []
    in_batch: set[str] = set()
    width = 1 + len(columns.alternates)
    for position, (row, record) in enumerate(batch):
        raw = cell(record, columns.phone)
        first = position * width
        phone = found[first]
        # One scan of the joined row in C: any cell, the phone's included.
        if NUL in "".join(record):
            errors.append(RowError(row, clip(raw.replace(NUL, "")), "nul_byte"))
            continue
        if isinstance(phone, str):
            errors.append(RowError(row, clip(raw), *rejection_of(phone)))
            continue
        e164, time_zones = phone
        contact = ParsedContact(
            row=row,
            raw=raw,
            e164=e164,
            time_zones=time_zones,
            external_id=_external_id(row, record, columns),
            dynamic_variables={name: cell(record, index) for name, index in columns.variables},
            alternates=_alternates(found[first + 1 : first + width], e164),
        )
        if e164 in in_batch:
            errors.append(RowError(row, clip(raw), "duplicate"))
        else:
            in_batch.add(e164)
            contacts.append(contact)
    return ParsedBatch(len(batch), contacts, errors)


def reject(batch: ParsedBatch, numbers: Collection[str], reason: str) -> ParsedBatch:
    """Reject, with ``reason``, the contacts whose number is in ``numbers``."""
    if not numbers:
        return batch
    contacts = [contact for contact in batch.contacts if contact.e164 not in numbers]
    rejected = [
        RowError(contact.row, clip(contact.raw), reason)
        for contact in batch.contacts
        if contact.e164 in numbers
    ]
    errors = sorted([*batch.errors, *rejected], key=lambda error: error.row)
    return ParsedBatch(batch.rows, contacts, errors)


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


def _external_id(row: int, record: list[str], columns: Columns) -> str | None:
    if columns.external_id is None:
        return None
    value = cell(record, columns.external_id).strip()
    if len(value) > MAX_EXTERNAL_ID_CHARS:
        raise ImportRefused(f"Row {row}: the id is longer than {MAX_EXTERNAL_ID_CHARS} characters.")
    return value or None
