"""Phone numbers: parse, validate, format as E.164, find candidate time zones, mask for logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_geographical_number, time_zones_for_number

RejectReason = Literal["missing", "unparseable", "invalid", "premium_rate"]

# phonenumbers' placeholder when it cannot place a number; we report "no known zone" as ().
_UNKNOWN_ZONE = "Etc/Unknown"

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
    zones = tuple(zone for zone in _time_zones(number, kind) if zone != _UNKNOWN_ZONE)
    return Phone(e164=phonenumbers.format_number(number, PhoneNumberFormat.E164), time_zones=zones)


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
