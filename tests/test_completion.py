"""A campaign completes when its last contact finishes, without every call's end queueing on the
campaign's row; a campaign left running with nothing open is completed by housekeeping."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_events import record_event
from campaigns.lifecycle import complete_finished
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
)
from tests.live_calls import answered, campaign_on_calls

SM = async_sessionmaker[AsyncSession]


async def _status(sm: SM, campaign_id: str) -> str:
    async with sm() as session:
        return str(await session.scalar(select(Campaign.status).where(Campaign.id == campaign_id)))


async def test_a_call_that_ends_before_the_last_does_not_wait_for_the_campaigns_row(
    sm: SM,
) -> None:
    campaign_id, (first, second) = await campaign_on_calls(sm, 2)
    async with AsyncExitStack() as stack:
        if dialect_name_of(sm) != "sqlite":
            # Another transaction holds the campaign's row (a claim of its next dials, another
            # call's end completing it, a pause) for as long as it likes ...
            holder = await stack.enter_async_context(sm.begin())
            await holder.execute(
                select(Campaign.id).where(Campaign.id == campaign_id).with_for_update()
            )
        # ... and a call whose contact is not the campaign's last is applied meanwhile.
        # (On SQLite writers take turns on the whole database: there is no row to queue on.)
        applied = await asyncio.wait_for(record_event(sm, answered(first)), timeout=10)
    assert applied.result == "applied"
    assert await _status(sm, campaign_id) == CampaignStatus.RUNNING
    # The last one completes it.
    await record_event(sm, answered(second))
    assert await _status(sm, campaign_id) == CampaignStatus.COMPLETED


async def test_housekeeping_completes_a_running_campaign_with_nothing_open(sm: SM) -> None:
    finished, _ = await campaign_on_calls(sm, 2)
    still_calling, _ = await campaign_on_calls(sm, 2)
    recurring, _ = await campaign_on_calls(sm, 1, schedule_cron="0 9 * * 1")
    # Left running with every contact finished: two transactions that finished its last two
    # contacts at once each saw the other's as open, or the node stopped before completing it.
    async with sm.begin() as session:
        await session.execute(
            update(Contact)
            .where(Contact.campaign_id.in_([finished, recurring]))
            .values(state=ContactState.DONE, disposition="answered")
        )
        one = await session.scalar(
            select(Contact.id).where(Contact.campaign_id == still_calling).limit(1)
        )
        await session.execute(
            update(Contact)
            .where(Contact.id == one)
            .values(state=ContactState.DONE, disposition="answered")
        )

    assert await complete_finished(sm) == 1

    assert await _status(sm, finished) == CampaignStatus.COMPLETED
    assert await _status(sm, still_calling) == CampaignStatus.RUNNING
    # A recurring campaign waits for its next firing.
    assert await _status(sm, recurring) == CampaignStatus.RUNNING
    assert await complete_finished(sm) == 0


def dialect_name_of(sm: SM) -> str:
    return str(sm.kw["bind"].dialect.name)
