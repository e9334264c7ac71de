"""A ``call_at`` column makes each row a reminder: its first call is not before that time."""

from __future__ import annotations

from datetime import datetime

from campaigns.call_at import BadCallAt, parse_call_at
from campaigns.intake.rows import ParsedContact

# A column of this name makes each row a reminder (ISO 8601; naive means the recipient's time).
CALL_AT_COLUMN = "call_at"


def reminder_times(
    contacts: list[ParsedContact], default_timezone: str
) -> tuple[dict[str, datetime], set[str]]:
    """Each reminder's time by number, and the numbers whose ``call_at`` cannot be read."""
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
