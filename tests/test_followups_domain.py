"""Follow-ups a person asks for, in the domain alone (campaigns/followups.py and transitions): a
callback at a time read in their zone, a call on another number, a stop; what each decides, and
what it does to the contact once the call is over."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import followups
from campaigns.call_events import record_event
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.dialing import DialRequest
from campaigns.dispatcher import Dispatcher
from campaigns.ids import new_id
from campaigns.models import (
    Attempt,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
    DncEntry,
    FollowUpSettings,
)
from tests.conftest import eventually
from tests.dialer_fakes import Provider
from tests.live_calls import first_call

SM = async_sessionmaker[AsyncSession]
PHONE = "+12125550150"  # New York
NEW_YORK = ZoneInfo("America/New_York")
# Every day, 09:00 to 17:00 in the person's own time.
OFFICE_HOURS = [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "09:00", "end": "17:00"}]


async def live_call(sm: SM, *, settings: dict[str, Any] | None = None, **fields: Any) -> Attempt:
    """A running campaign's contact on the line: its attempt is in progress."""
    now = utcnow()
    campaign = Campaign(
        id=new_id("cmp"),
        name="follow-ups",
        agent_id="agent_test",
        status=CampaignStatus.RUNNING,
        max_attempts=fields.pop("max_attempts", 5),
        retry_delay_seconds=60,
        calling_periods=fields.pop("calling_periods", OFFICE_HOURS),
        started_at=now,
        **fields,
    )
    contact, attempt = first_call(
        campaign.id,
        PHONE,
        contact={"time_zones": ["America/New_York"], "dynamic_variables": {"first_name": "Ada"}},
        conversation_id="conv_" + uuid.uuid4().hex[:12],
        transcript_summary="Asked to be called back tomorrow morning.",
        transcript=[{"role": "user", "message": "Call me tomorrow at ten."}],
        answered_at=now,
    )
    async with sm.begin() as session:
        session.add(campaign)
        await session.flush()
        session.add(contact)
        await session.flush()
        session.add(attempt)
        if settings is not None:
            session.add(FollowUpSettings(campaign_id=campaign.id, **settings))
    return attempt


async def hang_up(sm: SM, attempt: Attempt) -> None:
    assert attempt.provider_call_id is not None
    await record_event(
        sm,
        CallUpdate(
            provider="twilio",
            provider_call_id=attempt.provider_call_id,
            kind="status",
            received_at=utcnow(),
            status="completed",
            sequence=3,
            duration_seconds=30,
        ),
    )


async def contact_of(sm: SM, attempt: Attempt) -> Contact:
    async with sm() as session:
        contact = await session.get(Contact, attempt.contact_id)
        assert contact is not None
        return contact


def tomorrow_at(hour: int) -> datetime:
    """Tomorrow at ``hour`` o'clock, New York time."""
    day = datetime.now(NEW_YORK).date() + timedelta(days=1)
    return datetime.combine(day, time(hour), NEW_YORK)


def local_text(instant: datetime) -> str:
    """A wall-clock time as the person says it: no zone."""
    return instant.replace(tzinfo=None).isoformat()


async def ask(sm: SM, attempt: Attempt, kind: str, asked: str = "") -> followups.Outcome:
    return await followups.request(
        sm, attempt.id, kind, asked, source=followups.LIVE_CALL, now=utcnow()
    )


async def test_a_callback_at_a_local_time_is_the_next_call_once_the_call_ends(sm: SM) -> None:
    attempt = await live_call(sm)
    ten = tomorrow_at(10)
    outcome = await ask(sm, attempt, followups.CALLBACK, local_text(ten))
    # Read in the person's zone, and decided at once (the agent can confirm it).
    assert outcome.decision == "callback_queued" and outcome.zone == "America/New_York"
    assert outcome.call_at == ten
    # While the call lasts the contact is held by it.
    assert (await contact_of(sm, attempt)).state == ContactState.IN_PROGRESS
    await hang_up(sm, attempt)
    contact = await contact_of(sm, attempt)
    # The call was answered, which ends a contact; the callback keeps it, due at the time named.
    assert contact.state == ContactState.PENDING and contact.next_attempt_at == ten
    assert contact.disposition is None


async def test_a_callback_outside_the_calling_hours_or_past_ends_the_lead(sm: SM) -> None:
    for asked in (local_text(tomorrow_at(3)), "2001-01-01T10:00:00", "whenever suits you"):
        attempt = await live_call(sm)
        outcome = await ask(sm, attempt, followups.CALLBACK, asked)
        assert outcome.decision == "callback_time_invalid", asked
        await hang_up(sm, attempt)
        contact = await contact_of(sm, attempt)
        assert contact.state == ContactState.DONE
        assert contact.disposition == Disposition.CALLBACK_TIME_INVALID


async def test_callbacks_stop_at_max_callbacks_and_at_max_attempts(sm: SM) -> None:
    attempt = await live_call(sm, settings={"max_callbacks": 0})
    outcome = await ask(sm, attempt, followups.CALLBACK, local_text(tomorrow_at(10)))
    assert outcome.decision == "callback_ceiling_reached"
    await hang_up(sm, attempt)
    assert (await contact_of(sm, attempt)).disposition == "callback_ceiling_reached"

    attempt = await live_call(sm, max_attempts=1)
    outcome = await ask(sm, attempt, followups.CALLBACK, local_text(tomorrow_at(10)))
    assert outcome.decision == "attempt_ceiling_reached"


async def test_a_report_after_the_call_ended_reopens_the_lead_and_its_campaign(sm: SM) -> None:
    attempt = await live_call(sm)
    await hang_up(sm, attempt)
    async with sm() as session:
        campaign = await session.get(Campaign, attempt.campaign_id)
        assert campaign is not None and campaign.status == CampaignStatus.COMPLETED
    ten = tomorrow_at(10)
    outcome = await followups.request(
        sm, attempt.id, followups.CALLBACK, local_text(ten), source=followups.REPORT, now=utcnow()
    )
    assert outcome.decision == "callback_queued"
    contact = await contact_of(sm, attempt)
    assert contact.state == ContactState.PENDING and contact.next_attempt_at == ten
    async with sm() as session:
        campaign = await session.get(Campaign, attempt.campaign_id)
        assert campaign is not None and campaign.status == CampaignStatus.RUNNING
    # The same request reported again decides nothing new.
    again = await followups.request(
        sm, attempt.id, followups.CALLBACK, "garbage", source=followups.REPORT, now=utcnow()
    )
    assert again.request_id == outcome.request_id and again.decision == "callback_queued"


async def test_a_redirect_moves_the_next_call_to_the_new_number(sm: SM) -> None:
    attempt = await live_call(sm, settings={"max_redirects": 1})
    outcome = await ask(sm, attempt, followups.REDIRECT, "(415) 555-0142")
    assert outcome.decision == "redirect_queued" and outcome.phone_number == "+14155550142"
    await hang_up(sm, attempt)
    contact = await contact_of(sm, attempt)
    assert contact.state == ContactState.PENDING
    assert contact.current_number == "+14155550142"
    assert contact.next_attempt_at is not None

    invalid = await live_call(sm)
    assert (await ask(sm, invalid, followups.REDIRECT, "555-12")).decision == (
        "redirect_number_invalid"
    )
    await hang_up(sm, invalid)
    assert (await contact_of(sm, invalid)).disposition == "redirect_number_invalid"

    capped = await live_call(sm, settings={"max_redirects": 0})
    assert (await ask(sm, capped, followups.REDIRECT, "+14155550142")).decision == (
        "redirect_ceiling_reached"
    )


async def test_a_stop_lists_the_number_at_once_and_ends_the_lead(sm: SM) -> None:
    attempt = await live_call(sm)
    outcome = await ask(sm, attempt, followups.STOP)
    assert outcome.decision == "do_not_call"
    async with sm() as session:
        listed = list(await session.scalars(select(DncEntry).where(DncEntry.phone_number == PHONE)))
    # On the list while the call still lasts, for every campaign.
    assert [e.campaign_id for e in listed] == [None]
    await hang_up(sm, attempt)
    contact = await contact_of(sm, attempt)
    assert contact.state == ContactState.DONE and contact.disposition == Disposition.DNC


async def test_a_follow_up_call_is_told_about_the_call_before(sm: SM) -> None:
    attempt = await live_call(sm, settings={"context": ["call_type", "previous_summary"]})
    await ask(sm, attempt, followups.CALLBACK, local_text(tomorrow_at(10)))
    await hang_up(sm, attempt)
    now = utcnow() + timedelta(seconds=1)
    async with sm.begin() as session:
        contact = await session.get(Contact, attempt.contact_id)
        assert contact is not None
        callback = Attempt(
            id=new_id("att"),
            provider="twilio",
            campaign_id=attempt.campaign_id,
            contact_id=contact.id,
            number=2,
            phone_number=PHONE,
            created_at=now,
            scheduled_at=now,
        )
        session.add(callback)
        await session.flush()
        variables = await followups.call_variables(session, callback, contact)
    assert variables == {
        "first_name": "Ada",
        "campaign__call_type": "callback",
        "campaign__previous_summary": "Asked to be called back tomorrow morning.",
    }


async def test_report_items_named_by_the_settings_become_requests_and_mappings_variables(
    sm: SM,
) -> None:
    attempt = await live_call(
        sm,
        settings={
            "callback_item": "call_back_at",
            "stop_item": None,
            "redirect_item": "other_number",
            "mappings": {"plan": "chosen_plan"},
        },
    )
    results = {
        "call_back_at": local_text(tomorrow_at(11)),
        "other_number": "",
        "stop": True,  # not an item this campaign reads
        "plan": "gold",
    }
    outcomes = await followups.from_report(sm, attempt.id, results, utcnow())
    assert [(o.kind, o.decision) for o in outcomes] == [("callback", "callback_queued")]
    await hang_up(sm, attempt)
    contact = await contact_of(sm, attempt)
    assert contact.next_attempt_at == tomorrow_at(11)
    assert contact.dynamic_variables == {"first_name": "Ada", "chosen_plan": "gold"}


class Recording(Provider):
    """The test provider, keeping each request whole."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[DialRequest] = []

    async def place_call(self, request: DialRequest) -> str:
        self.requests.append(request)
        return await super().place_call(request)


async def test_a_callback_is_dialled_at_its_instant_and_a_native_call_is_told_why(sm: SM) -> None:
    """The real dispatcher dials a callback at the instant asked for; an agent that places
    the call itself gets the follow-up context with the dial."""
    attempt = await live_call(
        sm,
        settings={"context": ["call_type", "previous_conversation_id"]},
        calling_periods=None,
        agent_connection="native",
        agent_phone_number_id="phnum_test",
    )
    soon = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
    outcome = await ask(sm, attempt, followups.CALLBACK, soon.isoformat())
    assert outcome.call_at == soon
    await hang_up(sm, attempt)
    provider = Recording()
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=5)
    dispatcher.start()
    try:
        await eventually(lambda: provider.requests, within=10, what="the callback's dial")
    finally:
        await dispatcher.stop(drain_seconds=5)
    assert abs((provider.arrivals[0] - soon).total_seconds()) < 1.0
    assert provider.requests[0].dynamic_variables == {
        "first_name": "Ada",
        "campaign__call_type": "callback",
        "campaign__previous_conversation_id": attempt.conversation_id,
    }
