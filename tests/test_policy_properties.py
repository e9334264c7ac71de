"""Whatever the windows, zones, DST dates and retry delays: no planned attempt falls outside the
window in any candidate zone, and no contact exceeds max_attempts or the per-day cap."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.timezone import time_zones_for_number

from campaigns import policy
from campaigns.models import Campaign, Contact, Disposition
from campaigns.phones import normalize
from campaigns.windows import is_open, parse_periods, zone

# Numbers whose candidate zones differ: single zones, area codes spanning two zones, toll-free
# (no zone of its own), a 30-minute DST zone, and one with no zone (the campaign's is used).
SAMPLE_NUMBERS = [
    "+12125550100",  # New York
    "+13105550100",  # Los Angeles
    "+18085550100",  # Honolulu, no DST
    "+12085550100",  # Idaho: Boise and Los Angeles
    "+16055550100",  # South Dakota: Chicago and Denver
    "+19155550100",  # El Paso
    "+18005550100",  # toll-free: no zone of its own (the campaign's is used)
    "+442079460000",  # London
    "+61255501234",  # Australia (several zones)
]
CAMPAIGN_ZONES = ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# Instants near DST changes in the US, the EU and Australia, and around the year's turn.
DST_DATES = [
    datetime(2026, 3, 8, 6, tzinfo=UTC),
    datetime(2026, 3, 29, 0, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 16, tzinfo=UTC),
    datetime(2026, 10, 25, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 5, tzinfo=UTC),
    datetime(2026, 12, 31, 23, tzinfo=UTC),
]

clock = st.integers(0, 95).map(lambda q: q * 15)


@st.composite
def periods(draw: st.DrawFn) -> list[dict[str, object]]:
    result = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(clock)
        end = draw(st.integers(start // 15 + 1, 96)) * 15
        days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True))
        fmt = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
        result.append({"weekdays": days, "start": fmt(start), "end": fmt(end)})
    return result


@given(
    calling_periods=periods(),
    number=st.sampled_from(SAMPLE_NUMBERS),
    campaign_zone=st.sampled_from(CAMPAIGN_ZONES),
    start=st.sampled_from(DST_DATES),
    jitter=st.integers(0, 3 * 86400),
    delays=st.lists(st.integers(0, 3 * 86400), min_size=1, max_size=4),
    max_attempts=st.integers(1, 6),
    per_day=st.one_of(st.none(), st.integers(1, 3)),
    rule_set=st.sampled_from([None, "us_tcpa"]),
    unknown_zone=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_planned_attempts_stay_inside_windows_and_caps(
    calling_periods: list[dict[str, object]],
    number: str,
    campaign_zone: str,
    start: datetime,
    jitter: int,
    delays: list[int],
    max_attempts: int,
    per_day: int | None,
    rule_set: str | None,
    unknown_zone: bool,
) -> None:
    campaign = Campaign(
        id="cmp_p",
        timezone=campaign_zone,
        calling_periods=calling_periods,
        rule_set=rule_set,
        max_attempts=max_attempts,
        max_attempts_per_day=per_day,
        retry_delay_seconds=delays[0],
        retry_rules={"busy": {"retry": True, "delays": delays}},
        voicemail_policy="hang_up",
    )
    policy.validate_campaign_rules(campaign)
    zones = [] if unknown_zone else list(normalize(number, "US").time_zones)
    contact = Contact(id="ct_p", phone_number=number, time_zones=zones, attempts_made=0)
    effective_zones = policy.zones_for(campaign, contact)
    windows = policy.windows_for(campaign, number)
    own_window = parse_periods(calling_periods)

    now = start + timedelta(seconds=jitter)
    at = policy.plan(campaign, contact, now)
    dials: list[datetime] = []
    while at is not None:
        assert at >= now
        assert is_open(windows, effective_zones, at), (at, effective_zones)
        for name in effective_zones:  # the campaign's own window, read in each local time
            assert own_window.contains(at.astimezone(zone(name)))
        dials.append(at)
        contact.attempts_made += 1
        assert contact.attempts_made <= max_attempts
        step = policy.after_attempt(campaign, contact, Disposition.BUSY, at, dials=dials)
        if isinstance(step, policy.Final):
            assert step.disposition in (Disposition.BUSY, Disposition.EXPIRED)
            break
        now, at = at, step.at
    if per_day:
        for name in effective_zones:
            per_local_day = Counter(d.astimezone(zone(name)).date() for d in dials)
            assert max(per_local_day.values(), default=0) <= per_day


def test_window_opens_at_local_nine_on_both_sides_of_a_dst_change() -> None:
    campaign = Campaign(
        id="cmp_dst",
        timezone="UTC",
        calling_periods=[{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "09:00", "end": "17:00"}],
        max_attempts=3,
        retry_delay_seconds=60,
    )
    contact = Contact(id="ct", phone_number="+12125550100", time_zones=["America/New_York"])
    contact.attempts_made = 0
    # New York leaves daylight time on 2026-11-01: 09:00 is 13:00 UTC before, 14:00 UTC after.
    before = policy.plan(campaign, contact, datetime(2026, 10, 31, 2, tzinfo=UTC))
    after = policy.plan(campaign, contact, datetime(2026, 11, 1, 23, tzinfo=UTC))
    assert before == datetime(2026, 10, 31, 13, tzinfo=UTC)
    assert after == datetime(2026, 11, 2, 14, tzinfo=UTC)


def test_empty_or_inverted_windows_are_refused() -> None:
    import pytest

    for bad in ([], [{"weekdays": [0], "start": "17:00", "end": "09:00"}],
                [{"weekdays": [], "start": "09:00", "end": "17:00"}],
                [{"weekdays": [0], "start": "09:00", "end": "09:00"}],
                [{"weekdays": [7], "start": "09:00", "end": "10:00"}]):  # fmt: skip
        with pytest.raises(policy.PolicyError):
            policy.validate_campaign_rules(
                Campaign(
                    id="c",
                    timezone="UTC",
                    calling_periods=bad,
                    retry_delay_seconds=60,
                    voicemail_policy="hang_up",
                )
            )


def test_us_tcpa_uses_the_stricter_state_hours() -> None:
    campaign = Campaign(
        id="cmp_fl", timezone="UTC", rule_set="us_tcpa", max_attempts=3, retry_delay_seconds=60
    )
    florida = Contact(id="ct", phone_number="+13055550100", time_zones=["America/New_York"])
    florida.attempts_made = 0
    # 20:30 in Miami: inside the federal 21:00 limit, outside Florida's 20:00.
    evening = datetime(2026, 6, 10, 0, 30, tzinfo=UTC)
    assert policy.plan(campaign, florida, evening) == datetime(2026, 6, 10, 12, tzinfo=UTC)


def test_a_number_stored_with_every_zone_of_its_country_follows_the_campaigns_zone() -> None:
    # Contacts imported before toll-free numbers lost their zones still hold phonenumbers' 42
    # NANP zones, from Pago Pago to Guam: no 09:00-17:00 instant is inside all of them.
    every_zone = list(time_zones_for_number(phonenumbers.parse("+18005550100")))
    assert len(every_zone) > 40
    campaign = Campaign(
        id="cmp_tf",
        timezone="America/Chicago",
        calling_periods=[{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "09:00", "end": "17:00"}],
        max_attempts=3,
        retry_delay_seconds=60,
    )
    for zones in (every_zone, list(normalize("+18005550100", "US").time_zones)):
        contact = Contact(id="ct", phone_number="+18005550100", time_zones=zones)
        contact.attempts_made = 0
        assert policy.zones_for(campaign, contact) == ["America/Chicago"]
        # 08:00 in Chicago: the first call at 09:00 there (15:00 UTC).
        at = policy.plan(campaign, contact, datetime(2027, 1, 13, 14, tzinfo=UTC))
        assert at == datetime(2027, 1, 13, 15, tzinfo=UTC)


@given(
    calling_periods=periods(),
    number=st.sampled_from(SAMPLE_NUMBERS),
    rule_set=st.sampled_from([None, "us_tcpa"]),
    start=st.sampled_from(DST_DATES),
    days=st.integers(0, 2),
    pick=st.integers(0, 10),
    before=st.floats(0, 30),
    span=st.floats(0, 30),
)
@settings(max_examples=400, deadline=None)
def test_a_dial_allowed_at_both_ends_of_its_span_is_allowed_throughout(
    calling_periods: list[dict[str, object]],
    number: str,
    rule_set: str | None,
    start: datetime,
    days: int,
    pick: int,
    before: float,
    span: float,
) -> None:
    """The window check before a send looks at the create's departure and its latest arrival
    only (spans of up to 30 s): nothing in between may be outside the window. The spans are
    drawn around the end of a period in one of the number's zones, where a window closes."""
    campaign = Campaign(
        id="cmp_s", timezone="UTC", calling_periods=calling_periods, rule_set=rule_set
    )
    contact = Contact(
        id="ct_s", phone_number=number, time_zones=list(normalize(number, "US").time_zones)
    )
    hours = policy.calling_hours(campaign, contact)
    tz = zone(hours.zones[pick % len(hours.zones)])
    period = calling_periods[pick % len(calling_periods)]
    hour, minute = (int(part) for part in str(period["end"]).split(":"))
    day = start.astimezone(tz).date() + timedelta(days=days)
    end = datetime.combine(day, datetime.min.time(), tz) + timedelta(hours=hour, minutes=minute)
    first = end.astimezone(UTC) - timedelta(seconds=before)
    last = first + timedelta(seconds=span)
    if hours.closed_at(first, last) is None:
        for step in range(0, 41):
            instant = first + (last - first) * step / 40
            assert is_open(list(hours.windows), list(hours.zones), instant), instant
