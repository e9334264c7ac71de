"""The pacing grid: slots fixed to the wall clock, cps of them in every whole second."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.pacing import send_deadline, slot_index, slot_time
from tests.cluster import most_in_sliding_second


@pytest.mark.parametrize("cps", [1, 3, 7, 10, 20, 30])
def test_every_wall_clock_second_holds_exactly_cps_slots(cps: int) -> None:
    start = datetime(2031, 5, 17, 23, 59, 58, 123456, tzinfo=UTC)
    first = slot_index(start, cps)
    slots = [slot_time(first + i, cps) for i in range(cps * 120)]
    assert slots[0] >= start
    per_second = Counter(slot.replace(microsecond=0) for slot in slots)
    whole_seconds = sorted(per_second)[1:-1]  # the first and last are partly outside the range
    assert {per_second[second] for second in whole_seconds} == {cps}


def test_slots_leave_the_last_two_fifths_of_every_second_free() -> None:
    start = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    index = slot_index(start, 10)
    offsets = [slot_time(index + i, 10).microsecond for i in range(10)]
    assert offsets == [30_000 + 60_000 * i for i in range(10)]


@pytest.mark.parametrize("cps", [0.5, 3, 10, 20])
def test_a_slot_read_back_from_the_database_is_the_same_slot(cps: float) -> None:
    index = slot_index(datetime(2029, 3, 30, 1, 2, 3, tzinfo=UTC), cps)
    for k in range(index, index + 50):
        stored = slot_time(k, cps)  # whole microseconds, as the database keeps it
        assert slot_index(stored, cps) == k
        # An instant just after a slot maps to the next one: a slot is never handed out twice.
        assert slot_index(stored + timedelta(seconds=0.01 / cps), cps) == k + 1


def test_a_late_dial_may_leave_only_within_its_slots_second() -> None:
    last = datetime(2030, 1, 1, 12, 0, 0, 862_500, tzinfo=UTC)  # slot 23 of 24 at cps 24
    # The create still has 100 ms to arrive within the second.
    assert send_deadline(last) == datetime(2030, 1, 1, 12, 0, 0, 900_000, tzinfo=UTC)


def test_a_late_dial_may_leave_only_shortly_after_its_slot() -> None:
    first = datetime(2030, 1, 1, 12, 0, 0, 37_500, tzinfo=UTC)
    assert send_deadline(first) == first + timedelta(milliseconds=50)


@settings(max_examples=100, deadline=None)
@given(
    cps=st.integers(min_value=10, max_value=200),
    start=st.floats(min_value=1.9e9, max_value=2e9),
    lateness=st.lists(st.floats(min_value=0, max_value=1), min_size=400, max_size=400),
)
def test_dials_that_leave_in_time_stay_near_the_rate_over_any_sliding_second(
    cps: int, start: float, lateness: list[float]
) -> None:
    """However late each dial leaves within what send_deadline allows, no sliding second holds
    more than 1.25 x cps of them: late dials do not bunch up with the next ones."""
    first = slot_index(datetime.fromtimestamp(start, UTC), cps)
    left = []
    for i, late in enumerate(lateness):
        slot = slot_time(first + i, cps)
        left.append(slot + (send_deadline(slot) - slot) * late)
    assert most_in_sliding_second(left) <= 1.25 * cps


def test_an_instant_in_the_free_tail_waits_for_the_next_seconds_first_slot() -> None:
    tail = datetime(2030, 1, 1, 12, 0, 0, 800_000, tzinfo=UTC)
    slot = slot_time(slot_index(tail, 10), 10)
    assert slot == datetime(2030, 1, 1, 12, 0, 1, 30_000, tzinfo=UTC)
