"""Calling-hours rule sets kept as data.

US federal rule (47 CFR 64.1200(c)(1)): 08:00-21:00 in the called party's local time. Several
states are stricter (vendor compilations; not legal advice). The state comes from the number's
area code (phonenumbers' geocoder).
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from campaigns.windows import Period, Window

ALL_DAYS = frozenset(range(7))
NO_SUNDAY = frozenset(range(6))


@dataclass(frozen=True)
class StateRule:
    start: str
    end: str
    weekdays: frozenset[int] = ALL_DAYS
    max_calls_per_24h: int | None = None


US_FEDERAL = StateRule("08:00", "21:00")

US_STATE_RULES: dict[str, StateRule] = {
    "FL": StateRule("08:00", "20:00", max_calls_per_24h=3),
    "OK": StateRule("08:00", "20:00", max_calls_per_24h=3),
    "MD": StateRule("08:00", "20:00", max_calls_per_24h=3),
    "AL": StateRule("08:00", "20:00", weekdays=NO_SUNDAY),
    "LA": StateRule("08:00", "20:00", weekdays=NO_SUNDAY),
    "MS": StateRule("08:00", "21:00", weekdays=NO_SUNDAY),
    "CT": StateRule("09:00", "20:00"),
    "MA": StateRule("08:00", "20:00"),
    "KY": StateRule("10:00", "21:00"),
    "MI": StateRule("09:00", "21:00"),
    "MN": StateRule("09:00", "21:00"),
    "NM": StateRule("09:00", "21:00"),
    "NV": StateRule("09:00", "20:00"),
}

STATE_CODES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC",
}  # fmt: skip

RULE_SETS = ("us_tcpa",)


def us_state(e164: str) -> str | None:
    """Two-letter state of a US number's area code, when the geocoder knows it."""
    number = phonenumbers.parse(e164)
    if phonenumbers.region_code_for_number(number) != "US":
        return None
    # Imported on first use: the geocoder's data costs about 100 MB of memory, which a service
    # or an import that never applies us_tcpa should not carry.
    from phonenumbers import geocoder

    description = geocoder.description_for_number(number, "en")
    if ", " in description:  # "New York, NY"
        return description.rsplit(", ", 1)[1]
    return STATE_CODES.get(description)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _window(rule: StateRule) -> Window:
    return Window((Period(rule.weekdays, _minutes(rule.start), _minutes(rule.end)),))


def rule_for(rule_set: str | None, e164: str) -> StateRule | None:
    if rule_set != "us_tcpa":
        return None
    if not e164.startswith("+1"):
        return None
    state = us_state(e164)
    return US_STATE_RULES.get(state or "", US_FEDERAL)


def rule_windows(rule_set: str | None, e164: str) -> list[Window]:
    rule = rule_for(rule_set, e164)
    return [] if rule is None else [_window(rule)]


__all__ = ["RULE_SETS", "US_STATE_RULES", "Period", "StateRule", "rule_for", "rule_windows"]
