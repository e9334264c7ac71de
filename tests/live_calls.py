"""Contacts on a live call, written straight to the database as the dispatcher leaves them, and
the provider's last callback for such a call: for tests of what happens during and after a call."""

from __future__ import annotations

import uuid
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


def first_call(
    campaign_id: str, phone: str, *, contact: dict[str, Any] | None = None, **attempt: Any
) -> tuple[Contact, Attempt]:
    """A contact of the campaign on its first call: in progress, dialled now, with a call id.
    ``contact`` and ``attempt`` add to or replace the rows' columns. Add the contact first
    (flushed), then the attempt: its row refers to the contact's."""
    now = utcnow()
    contact_row = Contact(
        **{
            "id": new_id("ct"),
            "campaign_id": campaign_id,
            "phone_number": phone,
            "state": ContactState.IN_PROGRESS,
            "attempts_made": 1,
            **(contact or {}),
        }
    )
    attempt_row = Attempt(
        **{
            "id": new_id("att"),
            "provider": "twilio",
            "campaign_id": campaign_id,
            "contact_id": contact_row.id,
            "number": 1,
            "phone_number": phone,
            "provider_call_id": "CA" + uuid.uuid4().hex,
            "status": AttemptStatus.IN_PROGRESS,
            "created_at": now,
            "scheduled_at": now,
            "dialed_at": now,
            **attempt,
        }
    )
    return contact_row, attempt_row


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
            call_id = None if i >= calls - without_call_id else f"CA{new_id('x')}"
            contact, attempt = first_call(
                campaign.id,
                f"+1212555{i:04d}",
                contact={"created_at": now},
                status=status,
                provider_call_id=call_id,
            )
            session.add(contact)
            await session.flush()
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
