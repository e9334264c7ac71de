import pytest

from campaigns import phones
from campaigns.phones import Phone, PhoneRejected, mask, normalize


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
    zones = normalize("+1 800 555 1234", "US").time_zones
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(zones)


def test_unknown_zone_is_an_empty_tuple(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phones, "time_zones_for_number", lambda _number: ("Etc/Unknown",))
    assert normalize("+1 415 555 0100", "US").time_zones == ()


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
