"""Reminder times (``call_at``): ISO 8601 with an offset, or naive meaning the recipient's time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from campaigns.windows import WindowError, zone


class BadCallAt(ValueError):
    pass


def parse_call_at(raw: str, zones: Sequence[str], default_zone: str) -> datetime:
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadCallAt(f"call_at is not ISO 8601: {raw!r}") from exc
    if value.tzinfo is None:
        # A naive time is the recipient's wall clock: their (first) zone, else the campaign's.
        try:
            value = value.replace(tzinfo=zone(zones[0] if zones else default_zone))
        except WindowError as exc:
            raise BadCallAt(str(exc)) from exc
    return value.astimezone(UTC)
