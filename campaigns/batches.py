"""Campaigns seen as ElevenLabs-style batch calls: their counters, recipient statuses, retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.api_tables import BatchCall
from campaigns.clock import as_utc, utcnow
from campaigns.lifecycle import CampaignError, get_campaign
from campaigns.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
    Disposition,
)
from campaigns.transitions import complete_if_finished, reopen

BATCH_STATUS = {
    CampaignStatus.DRAFT: "pending",
    CampaignStatus.SCHEDULED: "pending",
    CampaignStatus.RUNNING: "in_progress",
    CampaignStatus.PAUSED: "in_progress",
    CampaignStatus.COMPLETED: "completed",
    CampaignStatus.CANCELLED: "cancelled",
}
# Final dispositions as recipient statuses; anything not listed (dnc, expired, removed) failed.
RECIPIENT_STATUS = {
    Disposition.ANSWERED: "completed",
    Disposition.VOICEMAIL: "voicemail",
    "voicemail_left": "voicemail",
    "cancelled": "cancelled",
}
LIVE_RECIPIENT_STATUS = {
    AttemptStatus.DIALING: "dispatched",
    AttemptStatus.QUEUED: "dispatched",
    AttemptStatus.INITIATED: "initiated",
    AttemptStatus.RINGING: "initiated",
    AttemptStatus.IN_PROGRESS: "in_progress",
}
# What a retry dials again, as on ElevenLabs: the failed recipients and those nobody answered.
# Cancelled recipients stay cancelled: someone decided they should not be called.
RETRYABLE = (Disposition.FAILED, Disposition.BUSY, Disposition.NO_ANSWER)


@dataclass(frozen=True)
class BatchCounts:
    scheduled: int
    dispatched: int
    finished: int
    last_finished_at: datetime | None


def recipient_status(contact: Contact, live_attempt_status: str | None) -> str:
    if contact.state == ContactState.DONE:
        return RECIPIENT_STATUS.get(contact.disposition or "", "failed")
    if contact.state == ContactState.IN_PROGRESS:
        return LIVE_RECIPIENT_STATUS.get(live_attempt_status or "", "dispatched")
    return "pending"


async def batch_counts(session: AsyncSession, campaign_id: str) -> BatchCounts:
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((Contact.attempts_made > 0, 1), else_=0)), 0),
                func.coalesce(func.sum(case((Contact.state == ContactState.DONE, 1), else_=0)), 0),
                func.max(Contact.finished_at),
            ).where(Contact.campaign_id == campaign_id)
        )
    ).one()
    return BatchCounts(int(row[0]), int(row[1]), int(row[2]), as_utc(row[3]))


async def recipients(
    session: AsyncSession, campaign_id: str
) -> list[tuple[Contact, str, Attempt | None]]:
    """Every contact with its recipient status and its latest attempt."""
    contacts = list(
        await session.scalars(
            select(Contact)
            .where(Contact.campaign_id == campaign_id)
            .order_by(Contact.created_at, Contact.id)
        )
    )
    latest = select(Attempt.contact_id, func.max(Attempt.number).label("number")).where(
        Attempt.campaign_id == campaign_id
    )
    latest_sq = latest.group_by(Attempt.contact_id).subquery()
    attempts = {
        a.contact_id: a
        for a in await session.scalars(
            select(Attempt).join(
                latest_sq,
                (Attempt.contact_id == latest_sq.c.contact_id)
                & (Attempt.number == latest_sq.c.number),
            )
        )
    }
    out = []
    for contact in contacts:
        attempt = attempts.get(contact.id)
        out.append(
            (contact, recipient_status(contact, attempt.status if attempt else None), attempt)
        )
    return out


async def retry_batch(
    sm: async_sessionmaker[AsyncSession], campaign_id: str
) -> tuple[Campaign, int]:
    """Queue the unanswered recipients of a finished batch once more. Returns how many."""
    now = utcnow()
    async with sm.begin() as session:
        campaign = await get_campaign(session, campaign_id)
        await session.refresh(campaign, with_for_update=True)
        if campaign.status not in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
            raise CampaignError(
                f"batch is {BATCH_STATUS.get(campaign.status, campaign.status)}: "
                "only a finished batch can be retried",
                code="conflict",
            )
        contacts = list(
            await session.scalars(
                select(Contact)
                .where(
                    Contact.campaign_id == campaign_id,
                    Contact.state == ContactState.DONE,
                    Contact.disposition.in_(RETRYABLE),
                )
                .with_for_update()
            )
        )
        for contact in contacts:
            reopen(session, contact, now)
        batch = await session.get(BatchCall, campaign_id, with_for_update=True)
        if batch is None:
            batch = BatchCall(campaign_id=campaign_id, retry_count=0, updated_at=now)
            session.add(batch)
        batch.retry_count += 1
        batch.updated_at = now
        if contacts:
            campaign.status = CampaignStatus.RUNNING
            campaign.completed_at = None
            campaign.started_at = campaign.started_at or now
        await session.flush()
        await complete_if_finished(session, campaign, now)
        return campaign, len(contacts)


async def touch(session: AsyncSession, campaign_id: str, **values: Any) -> BatchCall:
    now = utcnow()
    batch = await session.get(BatchCall, campaign_id)
    if batch is None:
        batch = BatchCall(campaign_id=campaign_id, retry_count=0, updated_at=now)
        session.add(batch)
    for name, value in values.items():
        setattr(batch, name, value)
    batch.updated_at = now
    return batch
