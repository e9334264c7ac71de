"""Where a phone number is, the way Twilio fills a callback's City, State, Zip and Country.

Twilio looks each party's number up and sends what it found, and an empty string for what it
did not (a postal code is often empty). The sandbox takes the place from phonenumbers' geocoder,
whose descriptions read "New York, NY", "Florida" or "London": a NANP state or province is sent
as its two-letter code, the country as its ISO 3166 code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import geocoder

# The geocoder names a NANP area by its state or province alone when no city fits; Twilio
# sends the postal abbreviation.
_NANP_REGIONS = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "Washington D.C.": "DC",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
    "Puerto Rico": "PR",
    "Alberta": "AB",
    "British Columbia": "BC",
    "Manitoba": "MB",
    "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL",
    "Nova Scotia": "NS",
    "Ontario": "ON",
    "Prince Edward Island": "PE",
    "Quebec": "QC",
    "Saskatchewan": "SK",
}


@dataclass(frozen=True)
class Place:
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""


@functools.lru_cache(maxsize=4096)
def place_of(number: str) -> Place:
    """The place Twilio would report for ``number``; empty fields where nothing is known."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        # A client identifier or SIP address: Twilio has no place for it either.
        return Place()
    country = phonenumbers.region_code_for_number(parsed) or ""
    description = geocoder.description_for_number(parsed, "en")
    if parsed.country_code != 1:
        return Place(city=description, country=country)
    city, _, state = description.rpartition(", ")
    if city and len(state) == 2:
        return Place(city=city, state=state, country=country)
    state = _NANP_REGIONS.get(description)
    if state is None:
        # Not a state or province: the description names a place without one.
        return Place(city=description, country=country)
    # The capital is the one "state" that is also a city.
    return Place(city="Washington" if state == "DC" else "", state=state, country=country)


def location_params(prefix: str, number: str) -> dict[str, str]:
    """``{prefix}City``, ``{prefix}State``, ``{prefix}Zip``, ``{prefix}Country`` for a number."""
    place = place_of(number)
    return {
        f"{prefix}City": place.city,
        f"{prefix}State": place.state,
        f"{prefix}Zip": place.zip,
        f"{prefix}Country": place.country,
    }
