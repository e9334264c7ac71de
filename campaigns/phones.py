"""Phone numbers: parse, validate, format as E.164, find candidate time zones, mask for logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_number

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
    if not phonenumbers.is_valid_number(number):
        raise PhoneRejected("invalid", raw)
    if phonenumbers.number_type(number) == PhoneNumberType.PREMIUM_RATE:
        raise PhoneRejected("premium_rate", raw)
    zones = tuple(zone for zone in time_zones_for_number(number) if zone != _UNKNOWN_ZONE)
    return Phone(e164=phonenumbers.format_number(number, PhoneNumberFormat.E164), time_zones=zones)


def mask(e164: str) -> str:
    """Hide the middle of a number for logs: ``+14155550100`` -> ``+1415***0100``."""
    if len(e164) >= 10:
        return f"{e164[:5]}***{e164[-4:]}"
    # Too short to keep 5 + 4 characters without showing all of it: keep only the last two.
    if len(e164) >= 5:
        return f"***{e164[-2:]}"
    return "***"
