"""A create left without an answer, on a provider that cannot list its calls.

Its call may well have been made, so "not in the list" must not make the attempt not placed (the
contact would be dialled again): the attempt waits for the call's report, and with none once the
call and its report must be over, ends failed as unconfirmed, counted, and is not retried.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from campaigns import reconciliation
from campaigns.clock import as_utc, utcnow
from campaigns.dialing import DialAmbiguous, DialRequest
from campaigns.dispatcher import Dispatcher
from campaigns.intake.contacts import import_contacts
from campaigns.lifecycle import CampaignSpec, create_campaign, start_now
from campaigns.models import Attempt, AttemptStatus, Campaign, Contact
from campaigns.reconciliation import Reconciler
from tests.conftest import eventually
from tests.dialer_fakes import Provider


class Unlisted(Provider):
    """Places every call, loses every answer, and cannot list the calls it placed."""

    def can_list_calls(self, agent_connection: str) -> bool:
        return False

    async def place_call(self, request: DialRequest) -> str:
        await super().place_call(request)
        raise DialAmbiguous("the create timed out after the call was placed")


async def one_contact_running(sm: Any) -> None:
    # Three attempts allowed: a plain failure would be retried.
    campaign = await create_campaign(
        sm,
        CampaignSpec(name="unlisted", max_attempts=3, retry_delay_seconds=1),
        {"stream": ()},
    )
    await import_contacts(
        sm, campaign.id, io.BytesIO(b"phone_number\n+12125550100\n"), default_region="US"
    )
    await start_now(sm, campaign.id)


async def contact_and_attempt(sm: Any) -> tuple[Contact, Attempt, Campaign]:
    async with sm() as session:
        (contact,) = (await session.scalars(select(Contact))).all()
        (attempt,) = (await session.scalars(select(Attempt))).all()
        (campaign,) = (await session.scalars(select(Campaign))).all()
    return contact, attempt, campaign


async def test_an_unanswered_create_the_provider_cannot_list_waits_then_ends_unconfirmed(
    sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await one_contact_running(sm)
    provider = Unlisted()
    dispatcher = Dispatcher(sm, provider, provider_timeout_seconds=0.1)
    dispatcher.start()
    try:
        await eventually(lambda: provider.creates, within=15, what="the create")
        await eventually(
            lambda: not dispatcher.dials_in_flight, within=15, what="the dial to give up"
        )
        reconciler = Reconciler(
            sm, provider, provider_timeout_seconds=0.1, report_grace=timedelta(seconds=30)
        )
        _, attempt, _ = await contact_and_attempt(sm)
        assert await reconciler.reconcile(attempt.id) == "waiting"

        # Nothing to ask: the attempt waits for its call's report, holding the contact, and is
        # looked at again once the call (ring timeout + time limit) and its report are overdue.
        contact, attempt, campaign = await contact_and_attempt(sm)
        assert attempt.status == AttemptStatus.DIALING
        assert contact.state == "in_progress"
        call_over = as_utc(attempt.scheduled_at) + timedelta(
            seconds=campaign.ring_timeout_seconds + campaign.time_limit_seconds
        )
        assert as_utc(attempt.lease_expires_at) == call_over + timedelta(seconds=30)
        assert await reconciler.reconcile_expired_leases() == 0

        # No report by then: the attempt failed, unconfirmed; it counts and is not retried,
        # although the campaign allows two more attempts.
        later = call_over + timedelta(seconds=31)

        def clock() -> datetime:
            return later

        monkeypatch.setattr(reconciliation, "utcnow", clock)
        assert await reconciler.reconcile_expired_leases() == 1
        contact, attempt, campaign = await contact_and_attempt(sm)
        assert attempt.status == AttemptStatus.FAILED
        assert attempt.error_code == "unconfirmed"
        assert attempt.error_message == (
            "unconfirmed: the provider cannot say whether the call was placed"
        )
        assert attempt.outcome == "failed"
        assert (contact.state, contact.disposition, contact.attempts_made) == ("done", "failed", 1)
        assert contact.next_attempt_at is None
        assert campaign.status == "completed"
        assert len(provider.creates) == 1
        assert utcnow() < later
    finally:
        await dispatcher.stop(drain_seconds=0)
