"""Phone numbers: parse, validate, format as E.164, find candidate time zones, mask for logs."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_geographical_number, time_zones_for_number

RejectReason = Literal[
    "missing",
    "unparseable",
    "invalid",
    "premium_rate",
    "number_type_not_allowed",
    "service_code",
    "extension",
    "nul_byte",
]

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
    "number_type_not_allowed": "numbers of this type are not called by this campaign",
    "service_code": "a service code (such as *67 or #31#) is not part of a number",
    "extension": "numbers with an extension cannot be dialled without a person to key it in",
    "nul_byte": "a NUL byte is not allowed in a value",
}

# The names campaigns list their callable number types by: phonenumbers' types, in lower case.
NUMBER_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}
# Numbers that reach a person where they are, at the caller's ordinary rate. Personal numbers
# forward to wherever their owner chose (at a premium), shared-cost and UAN numbers reach
# businesses' switchboards at a charge, pagers and voicemail boxes have no one to talk to.
DEFAULT_NUMBER_TYPES: frozenset[str] = frozenset(
    {"fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "voip"}
)
# What a campaign may choose to call. Premium-rate numbers are never among them: calling them is
# how toll fraud turns a calling service into money for someone else.
CHOOSABLE_NUMBER_TYPES: frozenset[str] = frozenset(NUMBER_TYPE_NAMES.values()) - {"premium_rate"}
# What a do-not-call list accepts: a listed number is never dialled, whatever its type, and a
# campaign may come to allow a type later.
ANY_NUMBER_TYPE: frozenset[str] = frozenset(NUMBER_TYPE_NAMES.values())


class PhoneRejected(ValueError):
    """A number callbridge will not call; ``reason`` is a stable code for reports and APIs."""

    def __init__(
        self, reason: RejectReason, raw: str | None = None, number_type: str | None = None
    ) -> None:
        self.reason: RejectReason = reason
        # Kept out of the message: exception text ends up in logs, where numbers must be masked.
        self.raw = raw
        # The number's type (``personal_number``, ...) when the type is why it was rejected.
        self.number_type = number_type
        message = _MESSAGES[reason]
        if number_type is not None and reason == "number_type_not_allowed":
            message = f"{number_type} numbers are not called by this campaign"
        super().__init__(f"phone number rejected ({reason}): {message}")

    def details(self) -> dict[str, str]:
        """The reason (and the number's type, when that is the reason) for an API answer."""
        found = {"reason": self.reason}
        if self.number_type is not None:
            found["number_type"] = self.number_type
        return found


@dataclass(frozen=True)
class Phone:
    e164: str
    # Every zone the number may be in; empty when the number's location is unknown.
    time_zones: tuple[str, ...]


def normalize(
    raw: str | None, default_region: str, number_types: Collection[str] = DEFAULT_NUMBER_TYPES
) -> Phone:
    """Parse ``raw`` (national numbers are read in ``default_region``) or raise PhoneRejected.

    ``number_types`` are the type names (NUMBER_TYPE_NAMES) the caller will call.
    """
    if raw is None or not raw.strip():
        raise PhoneRejected("missing", raw)
    refused = dial_string_problem(raw)
    if refused is not None:
        raise PhoneRejected(refused, raw)
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except NumberParseException as exc:
        raise PhoneRejected("unparseable", raw) from exc
    if number.extension:
        raise PhoneRejected("extension", raw)
    # The type is the costly part of validation: is_valid_number and time_zones_for_number each
    # work it out again, so it is worked out once. UNKNOWN is exactly what is_valid_number
    # reports as not valid (both test the number against its region's patterns).
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise PhoneRejected("invalid", raw)
    check_number_type(kind, number_types, raw)
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
@functools.lru_cache(maxsize=1024)
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


# A "#" after the number and digits after it: the extension as phone keypads write it (the
# number itself has no "*" or "#" before).
_HASH_EXTENSION = re.compile(r"[^*#]*\d[^*#\d]*#\s*\d+\s*")


def dial_string_problem(raw: str) -> RejectReason | None:
    """Why ``raw`` is more than a number, read before parsing (parsing would hide it).

    phonenumbers reads ``*67 415 555 0100`` with region DE as a German number and drops a
    ``#123`` extension; neither may be dialled as something else than what was written.
    """
    # Three scans of a short string in C: cheaper than a regex on every row of an import.
    if "\x00" in raw:
        return "nul_byte"
    if "*" in raw or "#" in raw:
        return "extension" if _HASH_EXTENSION.fullmatch(raw) else "service_code"
    return None


def check_number_type(kind: int, number_types: Collection[str], raw: str | None = None) -> None:
    """Raise PhoneRejected unless a number of phonenumbers' type ``kind`` may be called."""
    name = NUMBER_TYPE_NAMES.get(kind)
    if name is None:
        raise PhoneRejected("invalid", raw)
    if name not in number_types:
        if kind == PhoneNumberType.PREMIUM_RATE:
            raise PhoneRejected("premium_rate", raw)
        raise PhoneRejected("number_type_not_allowed", raw, name)


def number_types_of(chosen: Iterable[str] | None) -> frozenset[str]:
    """The number types a campaign calls: its own choice, or DEFAULT_NUMBER_TYPES (None)."""
    return DEFAULT_NUMBER_TYPES if chosen is None else frozenset(chosen)


def number_type_name(e164: str) -> str | None:
    """The type name of a stored E.164 number (None when phonenumbers does not know it)."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    return NUMBER_TYPE_NAMES.get(phonenumbers.number_type(number))


# normalize()'s answer in a form that is cheap to send between processes: (e164, time zones) for
# a number, the reason code for a rejected one ("reason:type" when its type is the reason; see
# rejection_of).
Normalized = tuple[str, tuple[str, ...]] | str


def rejection_of(found: str) -> tuple[str, str | None]:
    """A rejected Normalized as (reason, number type or None)."""
    reason, _, number_type = found.partition(":")
    return reason, number_type or None


def normalize_many(
    raws: Sequence[str | None],
    default_region: str,
    normalize_one: Callable[[str | None, str], Phone] | None = None,
    number_types: Collection[str] = DEFAULT_NUMBER_TYPES,
) -> list[Normalized]:
    """``normalize`` over many numbers; the unit of work of an import's parsing processes.

    ``normalize_one`` stands in for ``normalize`` with ``number_types`` when given.
    """
    one = normalize_one or functools.partial(normalize, number_types=number_types)
    found: list[Normalized] = []
    for raw in raws:
        try:
            phone = one(raw, default_region)
        except PhoneRejected as exc:
            found.append(
                exc.reason if exc.number_type is None else f"{exc.reason}:{exc.number_type}"
            )
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
