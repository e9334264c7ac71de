"""Campaigns run as outbound campaigns (bridge/api/outbound_campaigns.py): counts, progress, and
the workspace-wide pause and stop. Every state change goes through lifecycle/transitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.api_tables import OutboundCampaign
from campaigns.contact_counts import contact_counts
from campaigns.lifecycle import cancel, pause
from campaigns.models import (
    Attempt,
    AttemptStatus,
    AttentionItem,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
)

# Campaign states from which a pause or a stop applies.
PAUSABLE = (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED)
# Not drafts: a draft is a create still being written.
STOPPABLE = (
    CampaignStatus.SCHEDULED,
    CampaignStatus.RUNNING,
    CampaignStatus.PAUSED,
)


@dataclass
class LeadCounts:
    total: int = 0
    finished: int = 0
    uncalled: int = 0
    live: int = 0
    finished_by_disposition: dict[str, int] = field(default_factory=dict)
    open_attention: int = 0
    live_calls: int = 0
    next_call_at: datetime | None = None


async def lead_counts(session: AsyncSession, campaign_id: str) -> LeadCounts:
    found = (await contact_counts(session, [campaign_id], never_called=True))[campaign_id]
    counts = LeadCounts(
        total=found.contacts,
        finished=found.done,
        uncalled=found.never_called,
        live=found.in_progress + found.pending - found.never_called,
        finished_by_disposition=found.dispositions,
    )
    counts.open_attention = int(
        await session.scalar(
            select(func.count()).where(
                AttentionItem.campaign_id == campaign_id, AttentionItem.resolved_at.is_(None)
            )
        )
        or 0
    )
    counts.live_calls = int(
        await session.scalar(
            select(func.count()).where(
                Attempt.campaign_id == campaign_id, Attempt.status.in_(AttemptStatus.LIVE)
            )
        )
        or 0
    )
    counts.next_call_at = await session.scalar(
        select(func.min(Contact.next_attempt_at)).where(
            Contact.campaign_id == campaign_id, Contact.state == ContactState.PENDING
        )
    )
    return counts


async def _outbound_ids(
    sm: async_sessionmaker[AsyncSession], statuses: tuple[str, ...]
) -> list[str]:
    async with sm() as session:
        return list(
            await session.scalars(
                select(Campaign.id)
                .join(OutboundCampaign, OutboundCampaign.campaign_id == Campaign.id)
                .where(Campaign.status.in_(statuses))
                .order_by(Campaign.created_at, Campaign.id)
            )
        )


async def pause_all(sm: async_sessionmaker[AsyncSession]) -> list[str]:
    """Pause every running outbound campaign; returns the ids paused now."""
    paused = []
    for campaign_id in await _outbound_ids(sm, PAUSABLE):
        campaign = await pause(sm, campaign_id)
        if campaign.status == CampaignStatus.PAUSED:
            paused.append(campaign_id)
    return paused


async def stop_all(sm: async_sessionmaker[AsyncSession]) -> list[tuple[str, int]]:
    """Stop every unfinished outbound campaign: (id, calls still live) for each one stopped."""
    stopped = []
    for campaign_id in await _outbound_ids(sm, STOPPABLE):
        _campaign, live = await cancel(sm, campaign_id)
        stopped.append((campaign_id, len(live)))
    return stopped
