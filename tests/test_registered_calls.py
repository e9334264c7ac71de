"""Calls registered through register-call (placed by someone else): on record, never dialled,
and ended when their audio stream never starts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.models import Attempt, Campaign, CampaignStatus, Contact, ContactState
from campaigns.single_calls import (
    end_unconnected_registrations,
    register_call,
    registered_campaign_id,
)


async def test_a_registered_call_without_a_stream_ends_failed_and_is_never_dialled(
    sm: async_sessionmaker[AsyncSession],
) -> None:
    lost = await register_call(
        sm,
        agent_id="agent_r",
        number="+14155550142",
        provider="twilio",
        dynamic_variables={"a": None},
    )
    streaming = await register_call(
        sm,
        agent_id="agent_r",
        number="+14155550143",
        provider="twilio",
        dynamic_variables={},
        user_id="u1",
    )
    async with sm.begin() as session:
        # The second call's stream started: it took its call sid.
        await session.execute(
            update(Attempt).where(Attempt.id == streaming.id).values(provider_call_id="CA1")
        )
        campaign = await session.get(Campaign, registered_campaign_id("agent_r"))
        assert campaign is not None and campaign.max_attempts == 1
        assert campaign.status == CampaignStatus.RUNNING

    # Not yet: the stream has a while to start.
    assert await end_unconnected_registrations(sm) == 0
    assert await end_unconnected_registrations(sm, older_than=timedelta(0)) == 1

    async with sm() as session:
        attempts = {a.id: a for a in await session.scalars(select(Attempt))}
        contacts = {c.id: c for c in await session.scalars(select(Contact))}
    assert (attempts[lost.id].status, attempts[lost.id].error_code) == ("failed", "no_stream")
    # Its contact is done (one attempt at most): the campaign never dials it.
    assert contacts[lost.contact_id].state == ContactState.DONE
    assert contacts[lost.contact_id].disposition == "failed"
    assert attempts[streaming.id].status == "in-progress"
    assert contacts[streaming.contact_id].state == ContactState.IN_PROGRESS
    assert contacts[streaming.contact_id].user_id == "u1"
