"""Reminder times (``call_at``): ISO 8601 with an offset, or naive meaning the recipient's time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from campaigns.clock import BadInstant, parse_instant
from campaigns.windows import WindowError, zone


class BadCallAt(ValueError):
    pass


def parse_call_at(raw: str, zones: Sequence[str], default_zone: str) -> datetime:
    # A naive time is the recipient's wall clock: their (first) zone, else the campaign's.
    try:
        local = zone(zones[0] if zones else default_zone)
    except WindowError as exc:
        raise BadCallAt(str(exc)) from exc
    try:
        return parse_instant(raw, local)
    except BadInstant as exc:
        raise BadCallAt(f"call_at: {exc}") from exc
