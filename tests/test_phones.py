from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import time_zones_for_number

from campaigns import phones
from campaigns.phones import Phone, PhoneRejected, mask, normalize, normalize_many


@pytest.mark.parametrize(
    "raw",
    ["+1 415 555 0100", "(415) 555-0100", "415.555.0100", "4155550100", "1 415 555 0100"],
)
def test_formats_of_one_number_give_one_e164(raw: str) -> None:
    assert normalize(raw, "US") == Phone("+14155550100", ("America/Los_Angeles",))


def test_default_region_reads_national_numbers() -> None:
    assert normalize("020 7946 0958", "GB").e164 == "+442079460958"
    assert normalize("020 7946 0958", "gb").time_zones == ("Europe/London",)


def test_explicit_country_code_wins_over_default_region() -> None:
    assert normalize("+44 20 7946 0958", "US").e164 == "+442079460958"


def test_number_spanning_zones_lists_them_all() -> None:
    # Idaho's area code covers Boise (Mountain) and the north of the state (Pacific).
    assert normalize("+1 208 555 0100", "US").time_zones == ("America/Boise", "America/Los_Angeles")


@pytest.mark.parametrize(
    "raw",
    [
        "+1 800 555 1234",  # NANP toll-free: 42 zones, Pago Pago to Guam
        "+1 888 555 0100",
        "+44 800 123 4567",  # toll-free even where the country has one time
        "+7 912 345 6789",  # a Russian mobile: every zone of Russia, 10 hours apart
    ],
)
def test_numbers_with_no_place_of_their_own_have_no_zone(raw: str) -> None:
    assert normalize(raw, "US").time_zones == ()


def test_a_country_wide_list_that_still_places_the_number_is_kept() -> None:
    # A British mobile: London and the Crown dependencies, which keep London's time.
    assert set(normalize("+44 7400 123456", "US").time_zones) == {
        "Europe/London",
        "Europe/Guernsey",
        "Europe/Isle_of_Man",
        "Europe/Jersey",
    }
    # An Australian mobile: 4.5 hours from Cocos to Lord Howe, a working day still fits.
    assert "Australia/Perth" in normalize("+61 412 345 678", "US").time_zones


def test_unknown_zone_is_an_empty_tuple(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fixed line (its own zones) and a German mobile (its country's zones).
    for name in ("time_zones_for_number", "time_zones_for_geographical_number"):
        monkeypatch.setattr(phones, name, lambda _number: ("Etc/Unknown",))
    assert normalize("+1 415 555 0100", "US").time_zones == ()
    assert normalize("+49 151 23456789", "US").time_zones == ()


CALLED_BY_DEFAULT = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.VOIP,
)


def plainly(raw: str, region: str) -> Phone | str:
    """normalize() spelled out with phonenumbers' public checks, one after the other."""
    if not raw.strip():
        return "missing"
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return "unparseable"
    if not phonenumbers.is_valid_number(number):
        return "invalid"
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.PREMIUM_RATE:
        return "premium_rate"
    # What a campaign calls unless it says otherwise (UK 03 numbers are UAN, for one).
    if kind not in CALLED_BY_DEFAULT:
        return "number_type_not_allowed"
    zones = tuple(zone for zone in time_zones_for_number(number) if zone != "Etc/Unknown")
    if phonenumbers.number_type(number) == PhoneNumberType.TOLL_FREE or hours_apart(zones) > 6:
        zones = ()
    return Phone(phonenumbers.format_number(number, PhoneNumberFormat.E164), zones)


def hours_apart(zones: tuple[str, ...]) -> float:
    """The widest gap between the zones' UTC offsets in January and in July."""
    widest = 0.0
    for month in (1, 7):
        instant = datetime(2025, month, 15, tzinfo=UTC)
        offsets = [instant.astimezone(ZoneInfo(z)).utcoffset().total_seconds() for z in zones]
        if offsets:
            widest = max(widest, (max(offsets) - min(offsets)) / 3600)
    return widest


SAMPLES = [
    "+1 415 555 0100",
    "(212) 555-0160",
    "+1 800 555 1234",
    "+1 900 200 1234",
    "+1 684 733 1234",  # American Samoa, inside +1
    "+1 876 555 0123",  # Jamaica
    "+44 20 7946 0958",
    "+44 7400 123456",
    "+44 (0)161 496 0123",
    "+44 1624 456789",  # Isle of Man, inside +44
    "+49 30 12345678",
    "+49 151 23456789",
    "+49 900 1234567",
    "+33 6 12 34 56 78",
    "+7 495 123 45 67",
    "+7 701 123 4567",  # Kazakhstan, inside +7
    "+61 2 9374 4000",
    "+81 3-1234-5678",
    "+800 1234 5678",  # international freephone: no region
    "+882 345 678 90",
    "+979 1234 5678",
    "(415) 055-0142",
    "+1 415 555 010",
    "12",
    "abc",
    "",
]


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
def test_normalize_agrees_with_the_plain_checks(region: str) -> None:
    for raw in SAMPLES + [f"0{n} {n * 7919 % 10**7:07d}" for n in range(10, 400, 7)]:
        try:
            got: Phone | str = normalize(raw, region)
        except PhoneRejected as exc:
            got = exc.reason
        assert got == plainly(raw, region), raw


def test_normalize_many_gives_each_answer_in_order() -> None:
    assert normalize_many(["+1 415 555 0100", "", "+1 900 200 1234"], "US") == [
        ("+14155550100", ("America/Los_Angeles",)),
        "missing",
        "premium_rate",
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("abc", "unparseable"),
        ("+", "unparseable"),
        ("+0 123", "unparseable"),
        ("011", "unparseable"),
        ("12", "invalid"),
        ("(415) 055-0142", "invalid"),
        ("+1 415 555 010", "invalid"),
        ("+1 900 200 1234", "premium_rate"),
    ],
)
def test_rejections_carry_a_reason(raw: str | None, reason: str) -> None:
    with pytest.raises(PhoneRejected) as caught:
        normalize(raw, "US")
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_rejection_message_is_readable_and_keeps_the_number_out() -> None:
    with pytest.raises(PhoneRejected) as caught:
        normalize("+1 900 200 1234", "US")
    assert (
        str(caught.value)
        == "phone number rejected (premium_rate): premium-rate numbers are not called"
    )
    assert caught.value.raw == "+1 900 200 1234"


def test_unknown_default_region_makes_national_numbers_unparseable() -> None:
    with pytest.raises(PhoneRejected) as caught:
        normalize("415 555 0100", "ZZ")
    assert caught.value.reason == "unparseable"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550100", "+1415***0100"),
        ("+442079460958", "+4420***0958"),
        ("+3212345678", "+3212***5678"),
        ("+12345678", "***78"),
        ("+1234", "***34"),
        ("+123", "***"),
        ("", "***"),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask(number) == masked


@pytest.mark.parametrize("number", ["+1", "+12", "+123456", "+123456789", "+1234567890"])
def test_mask_never_shows_a_whole_number(number: str) -> None:
    masked = mask(number)
    assert "***" in masked
    assert number not in masked
