"""Timezone-aware UTC helpers: every timestamp inside callbridge is UTC.

For rehearsals against the sandbox, the whole process may run on a shifted clock (set once at
start-up from CALLBRIDGE_CLOCK_OFFSET_SECONDS): a campaign meant for tomorrow 09:00 in three time
zones can be played now. Anything that waits on the real clock (the scheduler) converts with
``to_real``.
"""

import math
from datetime import UTC, datetime, timedelta, tzinfo

_offset = timedelta(0)

# The instants accepted from users (start and end dates, reminder times, scheduled batches,
# filters): wider than any campaign or query needs, and far enough inside datetime's range
# (years 1-9999) that converting zones, adding retry delays or searching calling windows never
# steps out of it, where Python raises OverflowError.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class BadInstant(ValueError):
    """A time given by a user that is not one; the message is meant for that user."""


def set_offset(seconds: float) -> None:
    global _offset
    _offset = timedelta(seconds=seconds)


def to_real(instant: datetime) -> datetime:
    """The real-clock instant at which the shifted clock shows ``instant``."""
    return instant - _offset


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def iso_z(value: datetime | None) -> str | None:
    """An instant as shown to users and other systems: ISO 8601 in UTC, with a Z."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands naive datetimes back; they were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_instant(text: str, naive_zone: tzinfo | None = None) -> datetime:
    """An ISO 8601 time as an aware UTC instant between EARLIEST and LATEST.

    A naive time is read in ``naive_zone``; without one, a UTC offset is required.
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInstant(f"{text[:40]!r} is not an ISO 8601 time") from exc
    if value.tzinfo is None:
        if naive_zone is None:
            raise BadInstant(f"{text[:40]!r} needs a UTC offset (e.g. Z or +02:00)")
        value = value.replace(tzinfo=naive_zone)
    # Checked on the wall-clock year first: converting 9999-12-31 to UTC may already overflow.
    if not EARLIEST.year <= value.year < LATEST.year:
        raise _out_of_range(text)
    return within_range(value.astimezone(UTC), text)


def from_unix(seconds: float) -> datetime:
    """A Unix time (seconds) as an aware UTC instant between EARLIEST and LATEST."""
    if not math.isfinite(seconds) or not EARLIEST.timestamp() <= seconds < LATEST.timestamp():
        raise _out_of_range(str(seconds))
    return datetime.fromtimestamp(seconds, UTC)


def within_range(value: datetime, shown: str) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise _out_of_range(shown)
    return value


def _out_of_range(shown: str) -> BadInstant:
    return BadInstant(
        f"{shown[:40]!r} is out of range: times must lie between "
        f"{EARLIEST.year} and {LATEST.year - 1} (UTC)"
    )
