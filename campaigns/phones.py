"""Phone numbers: parse, validate, format as E.164, find candidate time zones, mask for logs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_geographical_number, time_zones_for_number

RejectReason = Literal["missing", "unparseable", "invalid", "premium_rate"]

# phonenumbers' placeholder when it cannot place a number; we report "no known zone" as ().
_UNKNOWN_ZONE = "Etc/Unknown"

# Candidate zones further apart than this do not place a number at all. They are what
# phonenumbers answers when it can only say "somewhere in this country code": every zone of it,
# for numbers of a non-geographic type (the NANP's toll-free and personal numbers get 42 zones,
# 21 hours apart from Pago Pago to Guam; a Russian mobile, 16 zones 10 hours apart). Read as "the
# window must be open in every one", no working-day window is ever open in all of them, and the
# contact would end `expired` untried. No geographic prefix in phonenumbers' data spans more than
# 4 hours, nor does any other whole country (Australia, 4.5 hours, is next), so 6 hours tells the
# two apart; narrower lists (a Newfoundland area code's two zones, Mexico's toll-free numbers)
# still place the number closely enough to honour every zone, the safe reading, and are kept.
MAX_ZONE_SPREAD = timedelta(hours=6)
# The instants the spread is measured at: a northern and a southern summer.
_SPREAD_SAMPLES = (datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 7, 15, tzinfo=UTC))

_MESSAGES: dict[str, str] = {
    "missing": "no phone number given",
    "unparseable": "not recognisable as a phone number",
    "invalid": "not a valid phone number",
    "premium_rate": "premium-rate numbers are not called",
}


class PhoneRejected(ValueError):
    """A number callbridge will not call; ``reason`` is a stable code for reports and APIs."""

    def __init__(self, reason: RejectReason, raw: str | None = None) -> None:
        self.reason: RejectReason = reason
        # Kept out of the message: exception text ends up in logs, where numbers must be masked.
        self.raw = raw
        super().__init__(f"phone number rejected ({reason}): {_MESSAGES[reason]}")


@dataclass(frozen=True)
class Phone:
    e164: str
    # Every zone the number may be in; empty when the number's location is unknown.
    time_zones: tuple[str, ...]


def normalize(raw: str | None, default_region: str) -> Phone:
    """Parse ``raw`` (national numbers are read in ``default_region``) or raise PhoneRejected."""
    if raw is None or not raw.strip():
        raise PhoneRejected("missing", raw)
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except NumberParseException as exc:
        raise PhoneRejected("unparseable", raw) from exc
    # The type is the costly part of validation: is_valid_number and time_zones_for_number each
    # work it out again, so it is worked out once. UNKNOWN is exactly what is_valid_number
    # reports as not valid (both test the number against its region's patterns).
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise PhoneRejected("invalid", raw)
    if kind == PhoneNumberType.PREMIUM_RATE:
        raise PhoneRejected("premium_rate", raw)
    if kind == PhoneNumberType.TOLL_FREE:
        # A freephone line rings wherever its owner routes it: the number says nothing about
        # where the person answering is, so it has no zone of its own (the campaign's applies).
        zones: tuple[str, ...] = ()
    else:
        zones = own_time_zones(_time_zones(number, kind))
    return Phone(e164=phonenumbers.format_number(number, PhoneNumberFormat.E164), time_zones=zones)


def own_time_zones(zones: Iterable[str]) -> tuple[str, ...]:
    """The zones that place a number: () when they are unknown or span a whole country."""
    known = tuple(zone for zone in zones if zone != _UNKNOWN_ZONE)
    if len(known) < 2:
        return known
    return () if _spread(known) > MAX_ZONE_SPREAD else known


# Room for every distinct zone list in phonenumbers' data (about 300).
@lru_cache(maxsize=1024)
def _spread(zones: tuple[str, ...]) -> timedelta:
    """How far apart the local times of ``zones`` are, at the widest of the sample instants."""
    widest = timedelta(0)
    for instant in _SPREAD_SAMPLES:
        offsets = []
        for name in zones:
            try:
                offset = instant.astimezone(ZoneInfo(name)).utcoffset()
            except (ZoneInfoNotFoundError, ValueError):
                continue  # a name this system's tz database lacks places nothing
            if offset is not None:
                offsets.append(offset)
        if offsets:
            widest = max(widest, max(offsets) - min(offsets))
    return widest


def _time_zones(number: phonenumbers.PhoneNumber, kind: int) -> tuple[str, ...]:
    # What time_zones_for_number gives, without its second look at the type for the common case.
    if phonenumbers.is_number_type_geographical(kind, number.country_code):
        return tuple(time_zones_for_geographical_number(number))
    return tuple(time_zones_for_number(number))


# normalize()'s answer in a form that is cheap to send between processes: (e164, time zones) for
# a number, the reason code for a rejected one.
Normalized = tuple[str, tuple[str, ...]] | RejectReason


def normalize_many(
    raws: Sequence[str | None],
    default_region: str,
    normalize_one: Callable[[str | None, str], Phone] = normalize,
) -> list[Normalized]:
    """``normalize`` over many numbers; the unit of work of an import's parsing processes."""
    found: list[Normalized] = []
    for raw in raws:
        try:
            phone = normalize_one(raw, default_region)
        except PhoneRejected as exc:
            found.append(exc.reason)
        else:
            found.append((phone.e164, phone.time_zones))
    return found


def mask(e164: str) -> str:
    """Hide the middle of a number for logs: ``+14155550100`` -> ``+1415***0100``."""
    if len(e164) >= 10:
        return f"{e164[:5]}***{e164[-4:]}"
    # Too short to keep 5 + 4 characters without showing all of it: keep only the last two.
    if len(e164) >= 5:
        return f"***{e164[-2:]}"
    return "***"
