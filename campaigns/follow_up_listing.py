"""A campaign's follow-up requests as a reader sees them: the newest first, each with its lead.

Follow-ups (a callback at a time the person named, a call on another number, a stop) are recorded
and decided by campaigns.followups in the ``follow_up_requests`` table. This module only reads
them, in one capped query, so every reader (the dashboard) shows whatever that work records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.models import Contact, FollowUpRequest


@dataclass(frozen=True)
class FollowUpEntry:
    id: str
    lead_id: str
    lead_external_id: str | None
    lead_phone_number: str
    # The lead as it stands now: its state and, once finished, its disposition.
    lead_state: str
    lead_disposition: str | None
    kind: str  # callback | redirect | stop
    # What the person asked for, as it came (a time, a number); empty for a stop.
    asked: str
    source: str  # live_call | report
    # What the campaign decided, and why in words when it refused.
    decision: str
    reason: str | None
    # A honoured callback's instant, a honoured redirect's number (E.164).
    call_at: datetime | None
    phone_number: str | None
    created_at: datetime
    # None while the call it was asked in is still live.
    applied_at: datetime | None


@dataclass(frozen=True)
class FollowUpListing:
    entries: list[FollowUpEntry]
    # More requests exist than the listing holds.
    more: bool


async def recent_follow_ups(
    session: AsyncSession, campaign_id: str, limit: int = 50
) -> FollowUpListing:
    """The campaign's ``limit`` newest follow-up requests, with their leads."""
    rows = (
        await session.execute(
            select(FollowUpRequest, Contact)
            .join(Contact, Contact.id == FollowUpRequest.contact_id)
            .where(FollowUpRequest.campaign_id == campaign_id)
            .order_by(FollowUpRequest.created_at.desc(), FollowUpRequest.id.desc())
            # One more than shown, to tell whether there are more.
            .limit(limit + 1)
        )
    ).all()
    entries = [
        FollowUpEntry(
            id=request.id,
            lead_id=contact.id,
            lead_external_id=contact.external_id,
            lead_phone_number=contact.phone_number,
            lead_state=contact.state,
            lead_disposition=contact.disposition,
            kind=request.kind,
            asked=request.asked,
            source=request.source,
            decision=request.decision,
            reason=request.reason,
            call_at=request.call_at,
            phone_number=request.phone_number,
            created_at=request.created_at,
            applied_at=request.applied_at,
        )
        for request, contact in rows[:limit]
    ]
    return FollowUpListing(entries=entries, more=len(rows) > limit)
