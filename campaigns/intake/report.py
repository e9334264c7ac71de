"""The intake report: counts of rows, accepted and rejected, and the first row errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from campaigns.intake.rows import ParsedBatch

# The report keeps the first errors only, so a file of a million bad rows gives a bounded report;
# the counts stay exact.
MAX_REPORTED_ERRORS = 1_000
MAX_VALUE_CHARS = 100  # of a rejected cell, echoed in the report

_Error = TypeVar("_Error")


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
        late = [RowError(row, clip(raw), "duplicate") for row, raw in sorted(rows)]
        keep_first(self.errors, late, self.max_errors)

    def add(self, batch: ParsedBatch) -> None:
        self.rows += batch.rows
        self.accepted += len(batch.contacts)
        self.rejected += len(batch.errors)
        keep_first(self.errors, batch.errors, self.max_errors)


def keep_first(errors: list[_Error], more: list[_Error], limit: int) -> None:
    """Append to ``errors`` as many of ``more`` as fit under ``limit`` (the rest only count)."""
    room = limit - len(errors)
    if room > 0:
        errors.extend(more[:room])


def clip(value: str) -> str:
    """A cell as the report echoes it: stripped, and cut short when long."""
    value = value.strip()
    return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
