"""Timezone-aware UTC helpers: every timestamp inside callbridge is UTC.

For rehearsals against the sandbox, the whole process may run on a shifted clock (set once at
start-up from CALLBRIDGE_CLOCK_OFFSET_SECONDS): a campaign meant for tomorrow 09:00 in three time
zones can be played now. Anything that waits on the real clock (the scheduler) converts with
``to_real``.
"""

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def set_offset(seconds: float) -> None:
    global _offset
    _offset = timedelta(seconds=seconds)


def to_real(instant: datetime) -> datetime:
    """The real-clock instant at which the shifted clock shows ``instant``."""
    return instant - _offset


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands naive datetimes back; they were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
