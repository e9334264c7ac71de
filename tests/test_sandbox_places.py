"""The place the sandbox carrier reports for a number, as Twilio fills City/State/Zip/Country."""

from __future__ import annotations

import pytest

from bridge.sandbox.geography import Place, location_params, place_of


@pytest.mark.parametrize(
    ("number", "place"),
    [
        ("+12125550101", Place(city="New York", state="NY", country="US")),
        ("+14155550100", Place(city="San Francisco", state="CA", country="US")),
        # The geocoder names only the state here: no city is made up.
        ("+13055550100", Place(state="FL", country="US")),
        ("+12025550100", Place(city="Washington", state="DC", country="US")),
        ("+14165550100", Place(state="ON", country="CA")),
        # Outside the NANP there is no state to report.
        ("+442079460000", Place(city="London", country="GB")),
        # A number the geocoder does not place: only its country is known.
        ("+15005550006", Place(country="US")),
        # Not a phone number at all (a client identifier): nothing is known.
        ("client:alice", Place()),
    ],
)
def test_a_number_is_placed_where_its_area_is(number: str, place: Place) -> None:
    assert place_of(number) == place


def test_each_prefix_gets_all_four_fields_even_when_empty() -> None:
    assert location_params("Called", "+13055550100") == {
        "CalledCity": "",
        "CalledState": "FL",
        "CalledZip": "",
        "CalledCountry": "US",
    }
