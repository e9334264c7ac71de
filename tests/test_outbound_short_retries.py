"""Short retries per calling window through the official elevenlabs SDK, against `callbridge
serve` on a shifted clock: three calls a window, then the next window, where interval_placement
puts the call; max_total_calls and max_consecutive_failures_per_number hold exactly."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from elevenlabs.types import CallingIntervalPolicy, CallingPeriod, PolicyConfigInput, RetryPolicy

from campaigns.clock import as_utc
from tests.databases import query_rows
from tests.service import Service, wait_until
from tests.test_outbound_campaigns_sdk import PHONE, _client, _recipient

NEW_YORK = ZoneInfo("America/New_York")
# A Wednesday, half a minute into the first window (10:00-10:01 in New York), so that its three
# calls are made before it closes, and the second window (10:01-10:02) opens half a minute later.
SHOWN = datetime(2027, 1, 13, 10, 0, 30, tzinfo=NEW_YORK)
FIRST = (SHOWN.replace(second=0), SHOWN.replace(minute=1, second=0))
SECOND = (FIRST[1], SHOWN.replace(minute=2, second=0))
DELAY = 3
STEP = 30
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
# Two windows that meet: two windows all the same (short retries are counted per window).
PERIODS = [
    CallingPeriod(
        weekdays=EVERY_DAY,
        intervals=[
            CallingIntervalPolicy(start="10:00", end="10:01"),
            CallingIntervalPolicy(start="10:01", end="10:02"),
        ],
    )
]
# Each lead's numbers never answer: busy (0181..) first, then no answer (0171..).
LEADS = {
    "start": ("+12125550181", "+12125550171"),
    "random": ("+12125550182", "+12125550172"),
    "rotate": ("+12125550183", "+12125550173"),
}
# In Los Angeles 10:00 comes three hours later: not dialled while the test runs.
LOS_ANGELES = "+13105550184"


pytestmark = pytest.mark.service_env(
    shown=SHOWN,
)


def _policy(placement: str) -> PolicyConfigInput:
    return PolicyConfigInput(
        timezone="America/New_York",
        calling_periods=PERIODS,
        retry=RetryPolicy(
            retry_delay_seconds=DELAY,
            max_short_retries=2,
            max_total_calls=6,
            max_consecutive_failures_per_number=4,
            interval_placement=placement,
            rotate_step_seconds=STEP if placement == "rotate" else None,
        ),
    )


def _instant(value: Any) -> datetime:
    """A timestamp read with plain SQL (SQLite hands back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    at = as_utc(value)
    assert at is not None
    return at


def _dials(database_url: str, campaign_id: str) -> list[tuple[datetime, str]]:
    """(planned instant, number) of each call the campaign placed, in order."""
    rows = query_rows(
        database_url,
        "SELECT scheduled_at, phone_number FROM attempts WHERE campaign_id = :id "
        "AND status != 'not_placed' ORDER BY scheduled_at",
        id=campaign_id,
    )
    return [(_instant(at), number) for at, number in rows]


def _inside(at: datetime, window: tuple[datetime, datetime]) -> bool:
    return window[0] <= at < window[1]


def _settled(database_url: str, lead_id: str) -> bool:
    """The lead is done, or its next call is planned past the second window."""
    ((state, upcoming),) = query_rows(
        database_url,
        "SELECT state, next_attempt_at FROM contacts WHERE id = :id",
        id=lead_id,
    )
    if state == "done":
        return True
    return state == "pending" and upcoming is not None and _instant(upcoming) >= SECOND[1]


def test_three_calls_a_window_then_the_next_window_where_its_placement_says(
    service: Service, database_url: str
) -> None:
    client = _client(service)
    created: dict[str, str] = {}
    for placement, numbers in LEADS.items():
        recipients = [_recipient(0, *numbers)]
        if placement == "start":
            recipients.append(_recipient(1, LOS_ANGELES))
        answer = client.create(
            call_name=placement,
            agent_id="agent_e2e",
            recipients=recipients,
            channel_config=PHONE,
            policy=_policy(placement),
        )
        assert answer.within_calling_window is True
        assert answer.campaign.policy.retry.interval_placement == placement
        created[placement] = answer.campaign.campaign_id
    leads = {
        placement: next(
            lead.lead_id
            for lead in client.leads.list(campaign_id).leads
            if lead.phone_number == LEADS[placement][0]
        )
        for placement, campaign_id in created.items()
    }
    for placement in created:
        wait_until(
            lambda p=placement: _settled(database_url, leads[p]),
            timeout=120,
            interval=0.5,
            what=f"the {placement} lead to be called in both windows",
        )

    called = {call["to"] for call in service.sandbox_calls()}
    assert LOS_ANGELES not in called
    for call in service.sandbox_calls():
        # No dial outside the periods, read in the recipient's own zone.
        at = datetime.fromisoformat(call["created_at"].replace("Z", "+00:00"))
        assert _inside(at, (FIRST[0], SECOND[1])), (call["to"], at.astimezone(NEW_YORK))

    for placement, campaign_id in created.items():
        dials = _dials(database_url, campaign_id)
        first = [at for at, _ in dials if _inside(at, FIRST)]
        second = [at for at, _ in dials if _inside(at, SECOND)]
        assert len(first) + len(second) == len(dials), (placement, dials)
        assert len(first) == 3, (placement, dials)
        for window in (first, second):
            for a, b in itertools.pairwise(window):
                # retry_delay_seconds apart, counted from the end of the failed call.
                assert DELAY <= (b - a).total_seconds() < DELAY + 2, (placement, window)
        if placement == "start":
            assert second[0] == SECOND[0]
        elif placement == "rotate":
            # rotate_step_seconds past where the last call failed in its window, wrapping
            # round inside the new one (windows last 60 s here).
            anchor = int((first[-1] - FIRST[0]).total_seconds())
            assert second[0] == SECOND[0] + timedelta(seconds=(anchor + STEP) % 60)
        else:
            assert _inside(second[0], SECOND)
        if placement == "random" and second[0] > SECOND[1] - timedelta(seconds=2 * DELAY + 4):
            # Placed too late in the window for its two short retries: they wait for a later
            # window (tomorrow's), never outside one.
            assert 1 <= len(second) <= 3
            continue
        assert len(second) == 3, (placement, dials)
        # max_total_calls 6, and max_consecutive_failures_per_number 4: four calls on the first
        # number, then the lead's second number.
        assert [number for _, number in dials] == [LEADS[placement][0]] * 4 + [
            LEADS[placement][1]
        ] * 2
        lead = client.leads.get(campaign_id, leads[placement])
        assert lead.terminal_disposition == "attempt_ceiling_reached"
        assert lead.attempt_count == 6 and lead.phone_numbers_index == 1
        sandbox = sorted(
            datetime.fromisoformat(call["created_at"].replace("Z", "+00:00"))
            for call in service.sandbox_calls()
            if call["to"] in LEADS[placement]
        )
        assert len(sandbox) == 6
        # The carrier saw each call within a second of its planned instant.
        assert all(
            timedelta(0) <= seen - at < timedelta(seconds=1)
            for seen, (at, _) in zip(sandbox, dials, strict=True)
        )

    # The lead in Los Angeles waits for 10:00 there.
    progress = client.get_progress(created["start"])
    la_opens = datetime(2027, 1, 13, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert progress.next_call_time_unix == int(la_opens.timestamp())
