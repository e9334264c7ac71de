"""A create the provider refuses as busy (429) is tried again within the same attempt, but only
while the attempt's lease holds: once it has run out, housekeeping may be settling the attempt,
and another create could dial it a second time."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from campaigns import dispatcher as dispatcher_module
from campaigns import dnc
from campaigns.dispatcher import Dispatcher
from campaigns.intake.contacts import import_contacts
from campaigns.lifecycle import CampaignSpec, create_campaign, start_now
from campaigns.models import Attempt, AttemptStatus, Contact
from campaigns.reconciliation import Reconciler
from tests.conftest import eventually
from tests.dialer_fakes import Provider


async def the_attempt(sm: Any, *, settled: bool) -> Attempt:
    async def found() -> Attempt | None:
        async with sm() as session:
            attempts = list(await session.scalars(select(Attempt)))
        if attempts and (not settled or attempts[0].status != AttemptStatus.DIALING):
            return attempts[0]
        return None

    return await eventually(found, within=15, what="the dial to settle")


async def one_contact_running(sm: Any) -> None:
    """A running campaign of one contact, +1 212 555 0100, that may be called once."""
    campaign = await create_campaign(
        sm, CampaignSpec(name="retries", max_attempts=1), {"stream": ()}
    )
    await import_contacts(
        sm, campaign.id, io.BytesIO(b"phone_number\n+12125550100\n"), default_region="US"
    )
    await start_now(sm, campaign.id)


@pytest.mark.parametrize("lease_runs_out", [False, True])
async def test_a_refused_create_is_retried_only_while_the_lease_holds(
    sm: Any, monkeypatch: pytest.MonkeyPatch, lease_runs_out: bool
) -> None:
    # A lease of provider timeout + slack: a slow 429 outlives a lease with no slack.
    if lease_runs_out:
        monkeypatch.setattr(dispatcher_module, "LEASE_SLACK", timedelta(0))
    await one_contact_running(sm)
    provider = Provider(refusals=1, answer_after=0.3)
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=0.1)
    dispatcher.start()
    try:
        if lease_runs_out:
            # The refusal came after the lease expired: no second create, the attempt waits
            # for housekeeping, which finds no call and records it as not placed.
            await the_attempt(sm, settled=False)
            await eventually(
                lambda: not dispatcher.dials_in_flight, within=15, what="the dial to give up"
            )
            assert provider.creates == [provider.creates[0]]
            reconciler = Reconciler(sm, provider, provider_timeout_seconds=0.1)
            assert await reconciler.reconcile_expired_leases() == 1
            attempt = await the_attempt(sm, settled=True)
            assert attempt.status == AttemptStatus.NOT_PLACED
        else:
            attempt = await the_attempt(sm, settled=True)
            assert len(provider.creates) == 2
            assert attempt.status == AttemptStatus.QUEUED
            assert attempt.provider_call_id == f"CA{2:032d}"
        assert len(set(provider.creates)) == 1  # one attempt throughout
    finally:
        await dispatcher.stop(drain_seconds=0)


async def test_a_number_listed_during_the_back_off_is_not_tried_again(sm: Any) -> None:
    """A do-not-call entry committed while a refused create waits for its retry stops the retry:
    the number is never dialled after its entry is committed."""
    await one_contact_running(sm)
    provider = Provider(refusals=1, answer_after=0.5)
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=5)
    dispatcher.start()
    try:
        await eventually(lambda: provider.creates, within=15, what="a create")
        async with sm.begin() as session:
            await dnc.add(session, "+12125550100", None, "asked during the call set-up")
        attempt = await the_attempt(sm, settled=True)
    finally:
        await dispatcher.stop(drain_seconds=5)
    async with sm() as session:
        contact = (await session.scalars(select(Contact))).one()
    assert provider.creates == [attempt.id]
    assert attempt.status == AttemptStatus.NOT_PLACED
    assert contact.disposition == "dnc"
