"""Changing a campaign's settings while it is a draft or paused, and deleting a draft."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.lifecycle import AgentConnections, CampaignError, CampaignSpec, get_campaign
from campaigns.models import Campaign, CampaignStatus

EDITABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.PAUSED)


def spec_of(campaign: Campaign) -> CampaignSpec:
    """The campaign's current settings as a spec (every field the spec and the table share)."""
    values = {
        f.name: getattr(campaign, f.name)
        for f in dataclasses.fields(CampaignSpec)
        if hasattr(campaign, f.name)
    }
    return CampaignSpec(**values)


async def update_campaign(
    sm: async_sessionmaker[AsyncSession],
    campaign_id: str,
    changes: dict[str, Any],
    connections: AgentConnections,
) -> Campaign:
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        if campaign.status not in EDITABLE_STATUSES:
            raise CampaignError(
                f"campaign is {campaign.status}; only a draft or a paused campaign can be changed",
                code="conflict",
            )
        spec = dataclasses.replace(spec_of(campaign), **changes)
        spec.validate(connections)
        for name in changes:
            value = getattr(spec, name)
            if name == "name":
                value = value.strip()
            elif name == "default_region":
                value = value.upper()
            setattr(campaign, name, value)
        return campaign


async def delete_draft(sm: async_sessionmaker[AsyncSession], campaign_id: str) -> None:
    async with sm.begin() as session:
        campaign = await _locked(session, campaign_id)
        if campaign.status != CampaignStatus.DRAFT:
            raise CampaignError(
                f"campaign is {campaign.status}; only a draft can be deleted",
                code="conflict",
            )
        # The database cascades to contacts, attempts and batch metadata.
        await session.execute(delete(Campaign).where(Campaign.id == campaign.id))


async def _locked(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    await session.refresh(campaign, with_for_update=True)
    return campaign
