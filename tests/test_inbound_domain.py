"""Calls back in the domain alone (campaigns/inbound.py and transitions): which contact a call
back finds, what it does to that contact, and what it leaves alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns import inbound
from campaigns.call_events import record_event
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.models import (
    Attempt,
    AttemptStatus,
    CallEvent,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Direction,
)

PHONE = "+12125550150"

SM = async_sessionmaker[AsyncSession]


async def contact_in(
    sm: SM,
    *,
    state: str = ContactState.PENDING,
    disposition: str | None = None,
    age: int = 0,
    **campaign_fields: Any,
) -> Contact:
    """A contact of a running campaign, created ``age`` seconds ago."""
    now = utcnow()
    campaign = Campaign(
        id=new_id("cmp"),
        name="call backs",
        agent_id="agent_test",
        status=CampaignStatus.RUNNING,
        max_attempts=3,
        retry_delay_seconds=60,
        started_at=now,
        **campaign_fields,
    )
    contact = Contact(
        id=new_id("ct"),
        campaign_id=campaign.id,
        phone_number=PHONE,
        dynamic_variables={"first_name": "Ada"},
        state=state,
        disposition=disposition,
        attempts_made=1,
        next_attempt_at=now + timedelta(hours=1) if state == ContactState.PENDING else None,
        created_at=now - timedelta(seconds=age),
    )
    async with sm.begin() as session:
        session.add(campaign)
        await session.flush()
        session.add(contact)
    return contact


async def call_back(sm: SM, call_id: str | None = None) -> inbound.InboundCall | None:
    return await inbound.answer(
        sm,
        provider="twilio",
        call_id=call_id or "CA" + uuid.uuid4().hex,
        caller=PHONE,
        raw={"From": PHONE},
        now=utcnow(),
    )


async def end(sm: SM, call_id: str, status: str = AttemptStatus.COMPLETED) -> None:
    update = CallUpdate(
        provider="twilio",
        provider_call_id=call_id,
        kind="status",
        received_at=utcnow(),
        status=status,
        sequence=0,
        duration_seconds=42,
    )
    await record_event(sm, update)


async def fresh(sm: SM, model: type, key: str) -> object:
    async with sm() as session:
        return await session.get(model, key)


async def test_a_call_asked_about_by_several_requests_at_once_is_one_attempt(sm: SM) -> None:
    # A provider that retries its request while the first is still being answered: every
    # request answers the same attempt, and the contact is held once.
    contact = await contact_in(sm)
    call_id = "CA" + uuid.uuid4().hex
    answers = await asyncio.gather(*(call_back(sm, call_id) for _ in range(4)))
    assert answers[0] is not None and answers[0].contact_id == contact.id
    assert all(answer == answers[0] for answer in answers)
    async with sm() as session:
        attempts = (
            await session.scalars(select(Attempt.id).where(Attempt.contact_id == contact.id))
        ).all()
    assert attempts == [answers[0].attempt_id]
    held = await fresh(sm, Contact, contact.id)
    assert isinstance(held, Contact) and held.attempts_made == 1


async def test_the_most_recent_contact_is_held_while_the_call_lasts_then_answered(
    sm: SM,
) -> None:
    older = await contact_in(sm, age=3600)
    newer = await contact_in(sm)
    call_id = "CA" + uuid.uuid4().hex
    call = await call_back(sm, call_id)
    assert call is not None and call.contact_id == newer.id and not call.do_not_call
    # Asked again for the same call (the provider retries), the same attempt answers.
    assert await call_back(sm, call_id) == call
    held = await fresh(sm, Contact, newer.id)
    assert isinstance(held, Contact)
    assert (held.state, held.next_attempt_at, held.attempts_made) == ("in_progress", None, 1)
    attempt = await fresh(sm, Attempt, call.attempt_id)
    assert isinstance(attempt, Attempt)
    assert (attempt.direction, attempt.status, attempt.number) == (
        Direction.INBOUND,
        AttemptStatus.IN_PROGRESS,
        1,
    )

    await end(sm, call_id)
    done = await fresh(sm, Contact, newer.id)
    assert isinstance(done, Contact)
    assert (done.state, done.disposition, done.attempts_made) == ("done", "answered", 1)
    ended = await fresh(sm, Attempt, call.attempt_id)
    assert isinstance(ended, Attempt)
    assert (ended.outcome, ended.talk_seconds) == ("answered", 42)
    untouched = await fresh(sm, Contact, older.id)
    assert isinstance(untouched, Contact) and untouched.state == ContactState.PENDING
    # Its campaign had no other contact open: it is over.
    campaign = await fresh(sm, Campaign, newer.campaign_id)
    assert isinstance(campaign, Campaign) and campaign.status == CampaignStatus.COMPLETED
    async with sm() as session:
        events = list(await session.scalars(select(CallEvent.kind)))
    assert sorted(events) == ["inbound", "status"]


async def test_a_finished_contact_keeps_its_disposition(sm: SM) -> None:
    contact = await contact_in(sm, state=ContactState.DONE, disposition="voicemail")
    call_id = "CA" + uuid.uuid4().hex
    call = await call_back(sm, call_id)
    assert call is not None
    await end(sm, call_id)
    after = await fresh(sm, Contact, contact.id)
    assert isinstance(after, Contact)
    assert (after.state, after.disposition) == ("done", "voicemail")
    attempt = await fresh(sm, Attempt, call.attempt_id)
    assert isinstance(attempt, Attempt) and attempt.outcome == "answered"


async def test_a_call_back_during_the_campaigns_own_call_leaves_the_contact_to_that_call(
    sm: SM,
) -> None:
    contact = await contact_in(sm, state=ContactState.IN_PROGRESS)
    now = utcnow()
    dialled = Attempt(
        id=new_id("att"),
        provider="twilio",
        campaign_id=contact.campaign_id,
        contact_id=contact.id,
        number=1,
        phone_number=PHONE,
        provider_call_id="CA" + uuid.uuid4().hex,
        status=AttemptStatus.RINGING,
        created_at=now,
        scheduled_at=now,
        dialed_at=now,
    )
    async with sm.begin() as session:
        session.add(dialled)
    call_id = "CA" + uuid.uuid4().hex
    call = await call_back(sm, call_id)
    assert call is not None
    await end(sm, call_id)
    after = await fresh(sm, Contact, contact.id)
    assert isinstance(after, Contact)
    assert (after.state, after.disposition) == ("in_progress", None)


async def test_an_unknown_or_withheld_caller_leaves_only_the_call_event(sm: SM) -> None:
    await contact_in(sm)
    for caller in ("+13125550199", "anonymous"):
        call_id = "CA" + uuid.uuid4().hex
        found = await inbound.answer(
            sm, provider="twilio", call_id=call_id, caller=caller, raw={}, now=utcnow()
        )
        assert found is None
    async with sm() as session:
        assert list(await session.scalars(select(Attempt.id))) == []
        events = list(await session.execute(select(CallEvent.kind, CallEvent.attempt_id)))
    assert [tuple(e) for e in events] == [("inbound", None), ("inbound", None)]


async def test_a_call_back_is_not_a_dial_of_the_campaign(sm: SM) -> None:
    # Two dials a day: the campaign's one dial today leaves room for another after the call
    # back fails, which it would not if the call back counted.
    contact = await contact_in(sm, max_attempts_per_day=2)
    now = utcnow()
    async with sm.begin() as session:
        session.add(
            Attempt(
                id=new_id("att"),
                provider="twilio",
                campaign_id=contact.campaign_id,
                contact_id=contact.id,
                number=1,
                phone_number=PHONE,
                provider_call_id="CA" + uuid.uuid4().hex,
                status=AttemptStatus.NO_ANSWER,
                outcome="no_answer",
                created_at=now,
                scheduled_at=now,
                dialed_at=now,
                ended_at=now,
            )
        )
    call_id = "CA" + uuid.uuid4().hex
    assert await call_back(sm, call_id) is not None
    await end(sm, call_id, AttemptStatus.FAILED)
    after = await fresh(sm, Contact, contact.id)
    assert isinstance(after, Contact)
    assert (after.state, after.attempts_made) == ("pending", 1)
    assert after.next_attempt_at is not None
    assert after.next_attempt_at.replace(tzinfo=now.tzinfo) <= utcnow() + timedelta(seconds=61)
