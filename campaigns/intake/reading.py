"""Reading a CSV file: UTF-8 decoded in chunks, the delimiter sniffed, the header's columns found,
and the data records handed out in batches with their spreadsheet row numbers.

Row numbers are the ones a spreadsheet shows: the header is row 1 and every CSV record after it
counts one row (record counter + 1), blank records included. A quoted cell spanning several lines is
still one row, so after such a cell the row number is lower than the file's line number.

Records whose cells are all blank (trailing ``,,,`` lines that spreadsheets export) are skipped:
they keep their row number but are not counted in the report.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from campaigns.intake.errors import ImportRefused

# PostgreSQL stores no NUL in text (and SQLite would keep a value the other refuses): a row with a
# NUL anywhere is refused, on both, with the reason nul_byte.
NUL = "\x00"
ID_COLUMN = "id"

_CHUNK_BYTES = 64 * 1024
# A "line" this long means the file is not a CSV (or has no line breaks at all): refuse it rather
# than buffer it.
_MAX_LINE_CHARS = 1024 * 1024
_DELIMITERS = (",", ";", "\t")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_QUOTED = re.compile(r'"[^"]*"')

# A data record with its spreadsheet row number.
Record = tuple[int, list[str]]


@dataclass(frozen=True, slots=True)
class Columns:
    phone: int
    external_id: int | None
    variables: tuple[tuple[str, int], ...]
    alternates: tuple[int, ...] = ()  # phone_number_2, phone_number_3, ... in that order


def open_records(
    source: BinaryIO, phone_column: str, batch_size: int
) -> tuple[Columns, Iterator[list[Record]]]:
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


def cell(record: list[str], index: int) -> str:
    # Short rows are common in hand-edited files: missing trailing cells read as empty.
    return record[index] if index < len(record) else ""


def is_blank(record: list[str]) -> bool:
    """Every cell blank: a ``,,,`` line that spreadsheets export, not a row."""
    return not "".join(record).strip()


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


def _columns(header: list[str], phone_column: str) -> Columns:
    if any(NUL in name for name in header):
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
    external_id = keys.index(ID_COLUMN) if ID_COLUMN in keys and wanted != ID_COLUMN else None
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
    return Columns(phone=phone, external_id=external_id, variables=variables, alternates=alternates)


def _record_batches(reader: Any, batch_size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    data_rows = 0
    row = 1
    failure: Exception | None = None
    try:
        for row, record in enumerate(reader, start=2):
            if is_blank(record):
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
