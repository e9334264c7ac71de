"""The calling window is checked again immediately before every create leaves, against the
instant it will reach the provider: the real dispatcher on a real database, with a provider that
stands in for Twilio at the Dialer port and notes when each create reaches it."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bridge.settings import Settings
from campaigns import clock
from campaigns.dispatcher import Dispatcher
from campaigns.intake.contacts import import_contacts
from campaigns.lifecycle import CampaignSpec, create_campaign, start_now
from campaigns.models import Attempt, AttemptStatus, Contact, ContactState
from tests.conftest import eventually
from tests.dialer_fakes import Provider

EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
# 09:00-17:00 in New York, where +1 212 numbers are: on Wednesday 13 January 2027 it closes at
# 22:00 UTC and opens again the next morning at 14:00 UTC.
NINE_TO_FIVE = [{"weekdays": EVERY_DAY, "start": "09:00", "end": "17:00"}]
CLOSE = datetime(2027, 1, 13, 22, 0, tzinfo=UTC)
REOPENS = datetime(2027, 1, 14, 14, 0, tzinfo=UTC)
# Each test starts its shifted clock this many seconds before the close: time to create the
# campaign and import its contacts (slow on a busy machine) before the first dial is due.
SET_UP = 6


@pytest.fixture
def shifted_clock() -> Any:
    """Run the process's clock so that ``shift_to(instant)`` makes now ``instant``."""

    def shift_to(instant: datetime) -> None:
        clock.set_offset((instant - datetime.now(UTC)).total_seconds())

    yield shift_to
    clock.set_offset(0)


async def one_campaign(sm: Any, csv: bytes) -> str:
    campaign = await create_campaign(
        sm,
        CampaignSpec(name="window", calling_periods=NINE_TO_FIVE, max_attempts=3),
        {"stream": ()},
    )
    await import_contacts(sm, campaign.id, io.BytesIO(csv), default_region="US")
    return campaign.id


async def wait_for(sm: Any, done: Any, what: str, phone: str = "+12125550100") -> Any:
    """Poll the contact ``phone`` and its attempts until ``done(contact, attempts)``."""

    async def probe() -> Any:
        async with sm() as session:
            contact = (await session.scalars(select(Contact).filter_by(phone_number=phone))).one()
            attempts = list(await session.scalars(select(Attempt).filter_by(contact_id=contact.id)))
        return (contact, attempts) if done(contact, attempts) else None

    return await eventually(probe, within=20, what=what)


async def test_a_create_retried_after_a_429_is_not_sent_once_the_window_has_closed(
    sm: Any, shifted_clock: Any
) -> None:
    # The first create leaves 2.5 s before 17:00 and is refused as busy 2.3 s later: its retry
    # (after a back-off of at least 0.25 s) could only reach the provider after the close.
    # (A reminder, so that its create leaves at a known instant however long the set-up takes.)
    shifted_clock(CLOSE - timedelta(seconds=SET_UP))
    due = (CLOSE - timedelta(seconds=2.5)).isoformat()
    campaign_id = await one_campaign(sm, f"phone_number,call_at\n+12125550100,{due}\n".encode())
    await start_now(sm, campaign_id)
    provider = Provider(refusals=1, answer_after=2.3)
    # Claims every 50 ms, as if woken at each due instant (the service's scheduler does that).
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=5, idle_poll_seconds=0.05)
    dispatcher.start()
    try:
        contact, attempts = await wait_for(
            sm,
            lambda c, a: len(provider.arrivals) > 1 or (a and a[0].status != "dialing"),
            "the attempt to settle",
        )
    finally:
        await dispatcher.stop(drain_seconds=5)
    assert len(provider.arrivals) == 1, provider.arrivals
    assert provider.arrivals[0] < CLOSE
    (attempt,) = attempts
    # The attempt was committed, then never dialled: it ends as such, with its reason.
    assert attempt.status == AttemptStatus.NOT_PLACED
    assert attempt.error_code == "window_closed"
    assert attempt.provider_call_id is None and attempt.dialed_at is None
    # Not counted against max_attempts; the contact waits for the next opening.
    assert contact.state == ContactState.PENDING
    assert contact.attempts_made == 0
    assert contact.next_attempt_at == REOPENS


async def test_a_dial_whose_create_would_arrive_after_the_close_is_not_started(
    sm: Any, shifted_clock: Any
) -> None:
    # A reminder due 0.1 s before 17:00, to a provider 0.2 s away: sent on time, its create
    # would reach the provider after the window has closed.
    shifted_clock(CLOSE - timedelta(seconds=SET_UP))
    due = (CLOSE - timedelta(seconds=0.1)).isoformat()
    campaign_id = await one_campaign(sm, f"phone_number,call_at\n+12125550100,{due}\n".encode())
    await start_now(sm, campaign_id)
    provider = Provider(one_way=0.2)
    # Claims every 50 ms, as if woken at each due instant (the service's scheduler does that).
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=5, idle_poll_seconds=0.05)
    dispatcher.start()
    try:
        contact, attempts = await wait_for(
            sm,
            lambda c, a: provider.arrivals or c.next_attempt_at == REOPENS,
            "a create or the contact planned for the next opening",
        )
    finally:
        await dispatcher.stop(drain_seconds=5)
    assert provider.arrivals == []
    assert contact.state == ContactState.PENDING and contact.attempts_made == 0
    assert contact.next_attempt_at == REOPENS
    # Nothing that reached the provider, nothing counted as dialled.
    assert all(a.status == AttemptStatus.NOT_PLACED for a in attempts)


async def test_the_margin_grows_with_the_providers_measured_round_trip(
    sm: Any, shifted_clock: Any
) -> None:
    # A provider 0.9 s away that answers 2 s after a create leaves, and a margin setting of
    # 0.1 s. Two reminders: the first is dialled 3 s before 17:00 (its create arrives at
    # 16:59:57.9, its answer at 16:59:59); the second is due 0.3 s before 17:00 and is claimed
    # 2 s ahead, while no create has been answered yet: the margin is then the setting alone,
    # and 16:59:59.7 + 0.1 s is inside the window. By its send the first answer has shown that
    # creates take 2 s, so its create, which would arrive at 17:00:00.6, is never sent.
    shifted_clock(CLOSE - timedelta(seconds=SET_UP))
    first, second = (CLOSE - timedelta(seconds=s) for s in (3, 0.3))
    rows = f"phone_number,call_at\n+12125550100,{first.isoformat()}\n"
    rows += f"+12125550101,{second.isoformat()}\n"
    campaign_id = await one_campaign(sm, rows.encode())
    await start_now(sm, campaign_id)
    provider = Provider(one_way=0.9, answer_after=2.0)
    dispatcher = Dispatcher(
        sm,
        provider,
        provider_timeout_seconds=5,
        idle_poll_seconds=0.05,
        window_margin_seconds=0.1,
    )
    dispatcher.start()
    try:
        late, attempts = await wait_for(
            sm,
            lambda c, a: "+12125550101" in provider.numbers or c.next_attempt_at == REOPENS,
            "the reminder to be dialled or planned for the next opening",
            phone="+12125550101",
        )
    finally:
        await dispatcher.stop(drain_seconds=5)
    assert provider.numbers == ["+12125550100"]
    assert provider.arrivals[0] < CLOSE
    # Claimed, committed, then stopped at the send: visible as such in the attempt's record.
    # (On a machine so busy that the reminder is claimed only after the first answer, the
    # claim itself holds it back, and there is no attempt.)
    assert [(a.status, a.error_code) for a in attempts] in (
        [(AttemptStatus.NOT_PLACED, "window_closed")],
        [],
    )
    assert late.state == ContactState.PENDING and late.attempts_made == 0
    assert late.next_attempt_at == REOPENS


def test_the_margin_is_a_setting_with_a_bounded_range() -> None:
    assert Settings.from_env({}).window_margin_seconds == 0.3
    assert (
        Settings.from_env({"CALLBRIDGE_WINDOW_MARGIN_SECONDS": "1.5"}).window_margin_seconds == 1.5
    )
    # Past 30 s the check at the send could miss a window that closes and reopens in between.
    for bad in ("-1", "31"):
        with pytest.raises(ValueError, match="CALLBRIDGE_WINDOW_MARGIN_SECONDS"):
            Settings.from_env({"CALLBRIDGE_WINDOW_MARGIN_SECONDS": bad})
