"""Transactions that settle calls take their rows in one order (attempt, contact, campaign), so
a group of callbacks applied together and a single call's transaction never wait for each other
in a circle. On PostgreSQL such a circle is a deadlock: the database rolls one of them back, and
a post-call report or a follow-up request in it would be lost: a recording that loses such a race
is tried again."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campaigns.call_events import record_events
from campaigns.models import (
    Attempt,
    Campaign,
    CampaignStatus,
    Contact,
    ContactState,
)
from campaigns.sqlutil import dialect_name, record_once
from tests.conftest import eventually
from tests.live_calls import answered, campaign_on_calls

SM = async_sessionmaker[AsyncSession]


async def _two_live_calls(sm: SM) -> tuple[str, list[Attempt]]:
    """A running campaign of two contacts, each on a live call; one call each."""
    campaign_id, attempts = await campaign_on_calls(sm, 2)
    # The group below takes the attempts in id order: the first it takes is answered first.
    return campaign_id, sorted(attempts, key=lambda a: a.id)


async def _waiting_for_a_lock(sm: SM) -> bool:
    async with sm() as session:
        if dialect_name(session) == "sqlite":
            # SQLite's writers take turns on the whole database: nothing to wait for row by row.
            return True
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return bool(waiting)


async def test_a_group_of_callbacks_and_a_single_calls_transaction_never_deadlock(
    sm: SM,
) -> None:
    campaign_id, (first, second) = await _two_live_calls(sm)
    # A single call's transaction (a follow-up request, a callback of its own) holds the second
    # call's attempt, as every such transaction starts ...
    async with sm.begin() as single:
        await single.execute(select(Attempt.id).where(Attempt.id == second.id).with_for_update())
        # ... while both calls' ends are applied as one group: the first call ends its contact,
        # which checks the campaign's completion.
        group = asyncio.create_task(record_events(sm, [answered(first), answered(second)]))
        await eventually(
            lambda: group.done() or _waiting_for_a_lock(sm),
            within=10,
            what="the group to reach the attempt the single transaction holds",
        )
        # ... and the single transaction goes on to the campaign's row, as a contact it
        # finishes makes it do. Had the group taken that row before waiting, neither could go on.
        await single.execute(
            select(Campaign.id).where(Campaign.id == campaign_id).with_for_update()
        )
    applied = await asyncio.wait_for(group, timeout=15)

    assert [a.result for a in applied] == ["applied", "applied"]
    async with sm() as session:
        states = await session.execute(
            select(Contact.state, Contact.disposition, func.count())
            .where(Contact.campaign_id == campaign_id)
            .group_by(Contact.state, Contact.disposition)
        )
        assert list(states) == [(ContactState.DONE, "answered", 2)]
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status == CampaignStatus.COMPLETED


class _Deadlocked(Exception):
    sqlstate = "40P01"


async def test_a_recording_chosen_as_a_deadlocks_victim_is_tried_again(sm: SM) -> None:
    tries: list[int] = []

    async def write(session: AsyncSession) -> str:
        tries.append(1)
        if len(tries) == 1:
            # What PostgreSQL answers the transaction it rolls back to break a deadlock.
            raise DBAPIError("SELECT … FOR UPDATE", None, _Deadlocked("deadlock detected"))
        return "recorded"

    async def read(session: AsyncSession) -> str:
        return "read"

    assert await record_once(sm, write, read) == "recorded"
    assert len(tries) == 2


async def test_a_recording_that_fails_otherwise_is_not_tried_again(sm: SM) -> None:
    tries: list[int] = []

    async def write(session: AsyncSession) -> str:
        tries.append(1)
        raise DBAPIError("INSERT …", None, Exception("disk full"))

    async def read(session: AsyncSession) -> str:
        return "read"

    with pytest.raises(DBAPIError):
        await record_once(sm, write, read)
    assert len(tries) == 1
