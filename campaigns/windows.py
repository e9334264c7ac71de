"""Weekly calling periods read in the recipient's own local time.

A contact may be called at an instant only when EVERY candidate time zone of its number is inside
EVERY window that applies (the campaign's periods, plus any legal rule set), so a number shared by
several zones is called only in the hours all of them allow.

A calling window, as short retries count calls in it, is one occurrence of a period: in every
zone and every window that applies, the period that holds the instant, on that local day; the
window runs from the latest of their starts to the earliest of their ends. Two periods that
meet (09:00-12:00 and 12:00-17:00) are two windows, as ElevenLabs counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 24 * 60
# How far ahead an opening is searched for: two weeks covers every weekly pattern and a DST shift.
SEARCH_DAYS = 15


class WindowError(ValueError):
    """Calling periods that can never be satisfied or cannot be read."""


@dataclass(frozen=True)
class Period:
    weekdays: frozenset[int]  # Monday = 0
    start: int  # minutes after local midnight
    end: int  # exclusive; 1440 means midnight at the end of the day

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7
        return local.weekday() in self.weekdays and self.start <= minute < self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "weekdays": sorted(self.weekdays),
            "start": _format_minutes(self.start),
            "end": _format_minutes(self.end),
        }


@dataclass(frozen=True)
class Window:
    """A union of weekly periods; empty means no restriction."""

    periods: tuple[Period, ...] = ()

    def contains(self, local: datetime) -> bool:
        return not self.periods or any(p.contains(local) for p in self.periods)

    def openings(self, zone: ZoneInfo, day: date) -> Iterable[datetime]:
        """The instants (UTC) at which a period of this window opens on ``day`` in ``zone``."""
        for period in self.periods:
            if day.weekday() in period.weekdays:
                yield _local_instant(day, period.start, zone)


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_clock(raw: Any, field: str) -> int:
    if not isinstance(raw, str) or len(raw) != 5 or raw[2] != ":":
        raise WindowError(f"{field} must be HH:MM, got {raw!r}")
    try:
        hours, minutes = int(raw[:2]), int(raw[3:])
    except ValueError as exc:
        raise WindowError(f"{field} must be HH:MM, got {raw!r}") from exc
    if (hours, minutes) == (24, 0):
        return MINUTES_PER_DAY
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise WindowError(f"{field} is not a time of day: {raw!r}")
    return hours * 60 + minutes


def _is_weekday(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6


def parse_periods(raw: Any) -> Window:
    """Read ``[{weekdays: [0..6], start: "HH:MM", end: "HH:MM"}]``; refuse empty/inverted ones."""
    if raw is None:
        return Window()
    if not isinstance(raw, list) or not raw:
        raise WindowError("calling_periods must be a non-empty list (or null for any time)")
    periods = []
    for index, item in enumerate(raw):
        where = f"calling_periods[{index}]"
        if not isinstance(item, dict):
            raise WindowError(f"{where} must be an object")
        weekdays = item.get("weekdays")
        if (
            not isinstance(weekdays, list)
            or not weekdays
            or not all(
                isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in weekdays
            )
        ):
            raise WindowError(f"{where}.weekdays must be a non-empty list of 0 (Monday) .. 6")
        start = _parse_clock(item.get("start"), f"{where}.start")
        end = _parse_clock(item.get("end"), f"{where}.end")
        if end <= start:
            raise WindowError(f"{where} is empty or inverted: end must be after start")
        periods.append(Period(frozenset(weekdays), start, end))
    return Window(tuple(periods))


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WindowError(f"unknown time zone {name!r}") from exc


def _local_instant(day: date, minutes: int, tz: ZoneInfo, *, latest: bool = False) -> datetime:
    """Local wall time on ``day`` as a UTC instant.

    A wall time skipped by a spring-forward change maps to the change itself, the first instant
    whose wall time is past it. One repeated by a fall-back change maps to its first occurrence,
    or with ``latest`` to its second: hours read by the wall clock are open through both, so a
    window closing then closes at the second.
    """
    if minutes >= MINUTES_PER_DAY:
        return _local_instant(day + timedelta(days=1), 0, tz, latest=latest)
    wall = datetime.combine(day, time(minutes // 60, minutes % 60))
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) != wall:
        # Skipped: zoneinfo reads the time with the offset before the change (``first``, past
        # the gap) and after it (``second``, before the gap); the change lies between.
        return _offset_change(second, first, tz)
    return second if latest else first


def _offset_change(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The instant in (``before``, ``after``] at which ``tz`` takes its offset at ``after``."""
    target = after.astimezone(tz).utcoffset()
    while after - before > timedelta(microseconds=1):
        middle = before + (after - before) // 2
        if middle.astimezone(tz).utcoffset() == target:
            after = middle
        else:
            before = middle
    return after


@dataclass(frozen=True)
class Span:
    """One calling window: from ``start`` (included) to ``end`` (excluded), UTC."""

    start: datetime
    end: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def window_at(windows: Sequence[Window], zones: Sequence[str], instant: datetime) -> Span | None:
    """The calling window ``instant`` lies in; None when it lies in none (the hours are closed
    then, or nothing restricts them, so there is no window to count calls in)."""
    start: datetime | None = None
    end: datetime | None = None
    for window in windows:
        if not window.periods:
            continue
        for name in zones:
            tz = zone(name)
            local = instant.astimezone(tz)
            holding = [p for p in window.periods if p.contains(local)]
            if not holding:
                return None
            day = local.date()
            opened = min(_local_instant(day, p.start, tz) for p in holding)
            closes = max(_local_instant(day, p.end, tz, latest=True) for p in holding)
            start = opened if start is None else max(start, opened)
            end = closes if end is None else min(end, closes)
    if start is None or end is None or not start <= instant < end:
        return None
    return Span(start, end)


def is_open(windows: Sequence[Window], zones: Sequence[str], instant: datetime) -> bool:
    return all(w.contains(instant.astimezone(zone(z))) for w in windows for z in zones)


def next_open(
    windows: Sequence[Window], zones: Sequence[str], earliest: datetime
) -> datetime | None:
    """The earliest instant >= ``earliest`` at which every zone is inside every window.

    The answer is ``earliest`` itself or the opening of some period in some zone: the start of an
    intersection of unions of intervals is always the start of one of them.
    """
    if is_open(windows, zones, earliest):
        return earliest
    candidates: set[datetime] = set()
    for name in zones:
        tz = zone(name)
        first_day = earliest.astimezone(tz).date() - timedelta(days=1)
        for offset in range(SEARCH_DAYS):
            day = first_day + timedelta(days=offset)
            for window in windows:
                candidates.update(t for t in window.openings(tz, day) if t > earliest)
    for candidate in sorted(candidates):
        if is_open(windows, zones, candidate):
            return candidate
    return None
