"""Short retries per calling window, and where a call pushed into a later window lands
(outbound campaigns' max_short_retries, interval_placement and rotate_step_seconds)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import policy
from campaigns.models import Campaign, Contact, Disposition
from campaigns.phones import normalize
from campaigns.windows import Span, is_open, parse_periods, window_at
from tests.test_policy_properties import CAMPAIGN_ZONES, DST_DATES, SAMPLE_NUMBERS, periods

NEW_YORK = "America/New_York"
# A Wednesday, 08:00 in New York.
MORNING = datetime(2027, 1, 13, 13, 0, tzinfo=UTC)
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
# Two windows a day, in the recipient's local time.
TWO_WINDOWS = [
    {"weekdays": EVERY_DAY, "start": "09:00", "end": "12:00"},
    {"weekdays": EVERY_DAY, "start": "14:00", "end": "17:00"},
]
RING = timedelta(seconds=20)


def _campaign(placement: str | None, **overrides: object) -> Campaign:
    values: dict[str, object] = {
        "id": "cmp_w",
        "timezone": "UTC",
        "calling_periods": TWO_WINDOWS,
        "rule_set": None,
        "max_attempts": 9,
        "max_attempts_per_day": None,
        "retry_delay_seconds": 600,
        "retry_rules": None,
        "voicemail_policy": "hang_up",
        "max_failures_per_number": 9,
        "end_after_number_failures": False,
        "max_short_retries": 2,
        "interval_placement": placement,
        "rotate_step_seconds": 1800 if placement == "rotate" else None,
        "start_at": None,
        "end_at": None,
        **overrides,
    }
    campaign = Campaign(**values)
    policy.validate_campaign_rules(campaign)
    return campaign


def _contact(number: str = "+12125550180") -> Contact:
    return Contact(
        id="ct_w",
        phone_number=number,
        time_zones=[NEW_YORK],
        alternate_numbers=[],
        number_index=0,
        failures_on_number=0,
        attempts_made=0,
        call_at=None,
    )


def _run(campaign: Campaign, contact: Contact, now: datetime, seed: int = 7) -> list[datetime]:
    """Dial a number that never answers until the campaign gives up on it: the dials."""
    rng = random.Random(seed)
    at = policy.plan(campaign, contact, now)
    dials: list[datetime] = []
    while at is not None:
        dials.append(at)
        contact.attempts_made += 1
        policy.next_number_after_failure(campaign, contact, Disposition.BUSY)
        step = policy.after_attempt(
            campaign, contact, Disposition.BUSY, at + RING, dials=dials, rng=rng
        )
        at = step.at if isinstance(step, policy.Retry) else None
    return dials


def _windows(campaign: Campaign, dials: list[datetime]) -> dict[Span, list[datetime]]:
    windows = policy.windows_for(campaign, "+12125550180")
    found: dict[Span, list[datetime]] = {}
    for dial in dials:
        span = window_at(windows, [NEW_YORK], dial)
        assert span is not None, dial
        found.setdefault(span, []).append(dial)
    return found


@pytest.mark.parametrize("placement", ["start", "random", "rotate"])
def test_three_calls_a_window_then_the_next_window_per_placement(placement: str) -> None:
    campaign = _campaign(placement)
    dials = _run(campaign, _contact(), MORNING)
    assert len(dials) == 9  # max_attempts holds exactly
    by_window = list(_windows(campaign, dials).items())
    # 09:00-12:00, 14:00-17:00 and the next morning: three calls in each, a delay apart.
    assert [len(found) for _, found in by_window] == [3, 3, 3]
    for _, found in by_window:
        gaps = {b - a for a, b in itertools.pairwise(found)}
        assert gaps == {RING + timedelta(seconds=600)}
    (first, _), (second, second_dials), (third, third_dials) = by_window
    assert first.start == datetime(2027, 1, 13, 14, 0, tzinfo=UTC)  # 09:00 in New York
    assert second.start == datetime(2027, 1, 13, 19, 0, tzinfo=UTC)  # 14:00
    assert third.start == datetime(2027, 1, 14, 14, 0, tzinfo=UTC)  # 09:00 the next day
    if placement == "start":
        assert second_dials[0] == second.start and third_dials[0] == third.start
    elif placement == "rotate":
        # 30 minutes past where the last call of the previous window was placed (20 min 40 s
        # into it): 50:40 into this one; then 50:40 + 20:40 + 30:00 into the next.
        assert second_dials[0] == second.start + timedelta(minutes=50, seconds=40)
        assert third_dials[0] == third.start + timedelta(minutes=101, seconds=20)
    else:
        for span, found in ((second, second_dials), (third, third_dials)):
            assert span.start <= found[0] < span.end


def test_random_placement_spreads_over_the_window() -> None:
    campaign = _campaign("random", max_attempts=4)
    firsts = set()
    for seed in range(20):
        dials = _run(campaign, _contact(), MORNING, seed=seed)
        firsts.add(dials[3])
    assert len(firsts) > 10
    assert all(
        datetime(2027, 1, 13, 19, 0, tzinfo=UTC) <= d < datetime(2027, 1, 13, 22, 0, tzinfo=UTC)
        for d in firsts
    )


def test_windows_that_meet_are_two_windows() -> None:
    campaign = _campaign(
        "start",
        calling_periods=[
            {"weekdays": EVERY_DAY, "start": "10:00", "end": "10:01"},
            {"weekdays": EVERY_DAY, "start": "10:01", "end": "10:02"},
        ],
        retry_delay_seconds=3,
        max_attempts=6,
    )
    ring = timedelta(seconds=1)
    contact = _contact()
    start = datetime(2027, 1, 13, 15, 0, 30, tzinfo=UTC)  # 10:00:30 in New York
    at: datetime | None = policy.plan(campaign, contact, start)
    dials: list[datetime] = []
    while at is not None:
        dials.append(at)
        contact.attempts_made += 1
        step = policy.after_attempt(campaign, contact, Disposition.BUSY, at + ring, dials=dials)
        at = step.at if isinstance(step, policy.Retry) else None
    second = datetime(2027, 1, 13, 15, 1, tzinfo=UTC)
    assert [d - start for d in dials[:3]] == [timedelta(seconds=4 * i) for i in range(3)]
    assert [d - second for d in dials[3:]] == [timedelta(seconds=4 * i) for i in range(3)]


def test_without_short_retries_a_retry_follows_its_delay_in_the_same_window() -> None:
    campaign = _campaign(None, max_short_retries=None)
    dials = _run(campaign, _contact(), MORNING)
    assert [len(found) for found in _windows(campaign, dials).values()] == [9]


def test_a_window_is_the_intersection_of_every_zone_and_rule() -> None:
    # Idaho's numbers may be in Boise or Los Angeles: 09:00-12:00 in both is 17:00-19:00 UTC.
    windows = [parse_periods(TWO_WINDOWS[:1])]
    zones = ["America/Boise", "America/Los_Angeles"]
    inside = datetime(2027, 1, 13, 18, 0, tzinfo=UTC)
    assert window_at(windows, zones, inside) == Span(
        datetime(2027, 1, 13, 17, 0, tzinfo=UTC), datetime(2027, 1, 13, 19, 0, tzinfo=UTC)
    )
    assert window_at(windows, zones, datetime(2027, 1, 13, 16, 30, tzinfo=UTC)) is None
    assert window_at([parse_periods(None)], zones, inside) is None


def test_a_window_across_a_clock_change_holds_every_instant_its_hours_are_open() -> None:
    """Hours are read by the wall clock: a window opening in the hour a spring-forward change
    skips opens at the change; one closing in the hour a fall-back change repeats closes at the
    second pass. Every open instant lies in its window, so its calls are counted."""
    windows = [parse_periods([{"weekdays": EVERY_DAY, "start": "02:30", "end": "05:00"}])]
    # 2027-03-14, New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    after_the_jump = datetime(2027, 3, 14, 7, 10, tzinfo=UTC)  # 03:10 EDT
    assert is_open(windows, [NEW_YORK], after_the_jump)
    assert window_at(windows, [NEW_YORK], after_the_jump) == Span(
        datetime(2027, 3, 14, 7, 0, tzinfo=UTC), datetime(2027, 3, 14, 9, 0, tzinfo=UTC)
    )
    windows = [parse_periods([{"weekdays": EVERY_DAY, "start": "00:00", "end": "01:30"}])]
    # 2027-11-07, New York: 01:00-02:00 is lived twice (EDT, then EST from 06:00 UTC).
    second_pass = datetime(2027, 11, 7, 6, 15, tzinfo=UTC)  # 01:15 EST
    assert is_open(windows, [NEW_YORK], second_pass)
    assert window_at(windows, [NEW_YORK], second_pass) == Span(
        datetime(2027, 11, 7, 4, 0, tzinfo=UTC), datetime(2027, 11, 7, 6, 30, tzinfo=UTC)
    )


def test_rotate_needs_its_step() -> None:
    with pytest.raises(policy.PolicyError, match="rotate_step_seconds"):
        _campaign("rotate", rotate_step_seconds=None)
    with pytest.raises(policy.PolicyError, match="interval_placement"):
        _campaign("sideways")


@given(
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    minutes=st.integers(1, 24 * 60),
    anchor=st.floats(0, 86400, allow_nan=False),
    step=st.integers(0, 3 * 86400),
    placement=st.sampled_from(["start", "random", "rotate"]),
    seed=st.integers(0, 2**32),
)
def test_a_placed_call_lands_inside_its_window_where_its_placement_says(
    start: datetime, minutes: int, anchor: float, step: int, placement: str, seed: int
) -> None:
    window = Span(start, start + timedelta(minutes=minutes))
    placed = policy.place(window, placement, anchor, step, random.Random(seed))
    assert window.start <= placed < window.end
    # Whole seconds into the window: the latest is a full second before it closes.
    offset = (placed - window.start).total_seconds()
    assert offset == int(offset) and offset <= minutes * 60 - 1
    if placement == "start":
        assert placed == window.start
    elif placement == "rotate":
        assert offset == (int(anchor) + step) % (minutes * 60)


@given(
    calling_periods=periods(),
    number=st.sampled_from(SAMPLE_NUMBERS),
    campaign_zone=st.sampled_from(CAMPAIGN_ZONES),
    start=st.sampled_from(DST_DATES),
    jitter=st.integers(0, 3 * 86400),
    delay=st.integers(0, 6 * 3600),
    short_retries=st.integers(0, 3),
    placement=st.sampled_from([None, "start", "random", "rotate"]),
    step=st.integers(0, 86400),
    rule_set=st.sampled_from([None, "us_tcpa"]),
)
@settings(max_examples=200, deadline=None)
def test_no_window_gets_more_calls_than_its_short_retries_allow(
    calling_periods: list[dict[str, object]],
    number: str,
    campaign_zone: str,
    start: datetime,
    jitter: int,
    delay: int,
    short_retries: int,
    placement: str | None,
    step: int,
    rule_set: str | None,
) -> None:
    campaign = _campaign(
        placement,
        calling_periods=calling_periods,
        timezone=campaign_zone,
        rule_set=rule_set,
        retry_delay_seconds=delay,
        max_short_retries=short_retries,
        rotate_step_seconds=step,
    )
    contact = _contact(number)
    contact.time_zones = list(normalize(number, "US").time_zones)
    zones = policy.zones_for(campaign, contact)
    windows = policy.windows_for(campaign, number)
    dials = _run(campaign, contact, start + timedelta(seconds=jitter), seed=jitter)
    assert len(dials) <= campaign.max_attempts
    assert dials == sorted(dials)
    per_window: Counter[Span] = Counter()
    for dial in dials:
        assert is_open(windows, zones, dial)
        span = window_at(windows, zones, dial)
        assert span is not None and dial in span
        per_window[span] += 1
    assert all(count <= 1 + short_retries for count in per_window.values()), per_window
