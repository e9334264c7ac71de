"""Pause a campaign for a set-up problem that every one of its calls would meet, and say why.

The edge that finds the problem (e.g. an agent whose audio cannot be converted) words the
message and the remedy; this module only records them as an attention item and stops further
dials until the operator resumes the campaign (which closes the item: see lifecycle.resume).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.models import AttentionItem, Campaign, CampaignStatus

log = logging.getLogger(__name__)


async def pause_for(
    sm: async_sessionmaker[AsyncSession],
    campaign_id: str,
    *,
    kind: str,
    code: str | None,
    message: str,
    remedy: str,
    details: dict[str, Any],
) -> AttentionItem | None:
    """Raise an attention item and pause the campaign if it runs. Returns None when an open
    item of the same kind already says it (calls live at once all meet the same problem)."""
    now = utcnow()
    async with sm.begin() as session:
        # Locked: two calls failing at the same moment must raise one item, not two.
        campaign = await session.scalar(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        )
        if campaign is None:
            return None
        already = await session.scalar(
            select(AttentionItem.id).where(
                AttentionItem.campaign_id == campaign_id,
                AttentionItem.kind == kind,
                AttentionItem.resolved_at.is_(None),
            )
        )
        if already is not None:
            return None
        item = AttentionItem(
            id=new_id("atn"),
            campaign_id=campaign_id,
            kind=kind,
            code=code[:32] if code else None,
            message=message,
            remedy=remedy,
            details=details,
            created_at=now,
        )
        session.add(item)
        if campaign.status in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED):
            campaign.status = CampaignStatus.PAUSED
        log.warning("campaign %s paused: %s", campaign_id, message)
    return item
