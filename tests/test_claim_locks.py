"""A dispatcher pass that finds nothing due leaves the campaign's row alone: every call that ends
wakes the dispatcher, and a lock taken by each such pass would queue calls' ends behind it."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.clock import utcnow
from campaigns.dispatcher import Dispatcher
from campaigns.ids import new_id
from campaigns.models import Campaign, Contact, ContactState
from tests.conftest import eventually
from tests.dialer_fakes import Provider
from tests.live_calls import campaign_on_calls

SM = async_sessionmaker[AsyncSession]


async def test_a_pass_with_nothing_due_takes_no_lock_on_the_campaigns_row(sm: SM) -> None:
    # Every contact is on a call: nothing to claim.
    campaign_id, _ = await campaign_on_calls(sm, 2, concurrency=10)
    provider = Provider()
    passes: list[datetime | None] = []
    dispatcher = Dispatcher(sm, provider, on_next_due=passes.append)
    try:
        async with AsyncExitStack() as stack:
            if sm.kw["bind"].dialect.name != "sqlite":
                # Another transaction holds the row (a claim elsewhere, a pause, a completion).
                # (On SQLite writers take turns on the whole database: no row to queue on.)
                holder = await stack.enter_async_context(sm.begin())
                await holder.execute(
                    select(Campaign.id).where(Campaign.id == campaign_id).with_for_update()
                )
            dispatcher.start()
            await eventually(lambda: passes, within=10, what="a pass while the row is held")
        # A contact due now is claimed and dialled, as ever, under the row's lock.
        async with sm.begin() as session:
            session.add(
                Contact(
                    id=new_id("ct"),
                    campaign_id=campaign_id,
                    phone_number="+12125550199",
                    time_zones=["America/New_York"],
                    state=ContactState.PENDING,
                    next_attempt_at=utcnow(),
                    created_at=utcnow(),
                )
            )
        dispatcher.wake()
        await eventually(lambda: provider.numbers, within=10, what="the due contact's dial")
    finally:
        await dispatcher.stop(drain_seconds=5)
    assert provider.numbers == ["+12125550199"]
