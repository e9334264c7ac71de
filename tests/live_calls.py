"""A running campaign whose contacts are each on a live call, written straight to the database,
and the provider's last callback for such a call: for tests of what a call's end does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.models import (
    Answerer,
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
)


async def campaign_on_calls(
    sm: async_sessionmaker[AsyncSession],
    calls: int,
    *,
    status: str = AttemptStatus.IN_PROGRESS,
    without_call_id: int = 0,
    **campaign_fields: Any,
) -> tuple[str, list[Attempt]]:
    """A running campaign of ``calls`` contacts, each on one call in ``status``; the last
    ``without_call_id`` attempts have no call id yet (their create's answer has not come back).
    Returns the campaign's id and the attempts, in the order their contacts were made."""
    now = utcnow()
    campaign = Campaign(
        id=new_id("cmp"),
        name="live calls",
        agent_id="agent_test",
        status=CampaignStatus.RUNNING,
        max_attempts=1,
        started_at=now - timedelta(minutes=1),
        **campaign_fields,
    )
    attempts = []
    async with sm.begin() as session:
        session.add(campaign)
        await session.flush()
        for i in range(calls):
            contact = Contact(
                id=new_id("ct"),
                campaign_id=campaign.id,
                phone_number=f"+1212555{i:04d}",
                state=ContactState.IN_PROGRESS,
                attempts_made=1,
                created_at=now,
            )
            session.add(contact)
            await session.flush()
            attempt = Attempt(
                id=new_id("att"),
                provider="twilio",
                campaign_id=campaign.id,
                contact_id=contact.id,
                number=1,
                phone_number=contact.phone_number,
                provider_call_id=None if i >= calls - without_call_id else f"CA{new_id('x')}",
                status=status,
                created_at=now,
                scheduled_at=now,
                dialed_at=now,
            )
            session.add(attempt)
            attempts.append(attempt)
    return campaign.id, attempts


def answered(attempt: Attempt) -> CallUpdate:
    """The call's completed callback: a person answered and talked for 30 s."""
    return CallUpdate(
        provider="twilio",
        provider_call_id=str(attempt.provider_call_id),
        kind="status",
        received_at=utcnow(),
        status=AttemptStatus.COMPLETED,
        sequence=4,
        answerer=Answerer.HUMAN,
        duration_seconds=30,
    )
