"""A campaign that ends contacts after repeated failures on their last number
(end_after_number_failures), as outbound campaigns' max_consecutive_failures_per_number does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns import policy
from campaigns.models import Campaign, Contact, Disposition
from tests.policy_fixtures import bare_campaign

NOW = datetime(2026, 6, 1, 15, tzinfo=UTC)


def _campaign(end: bool) -> Campaign:
    return bare_campaign(max_attempts=10, max_failures_per_number=2, end_after_number_failures=end)


def _fail(campaign: Campaign, contact: Contact) -> policy.Retry | policy.Final:
    contact.attempts_made += 1
    policy.next_number_after_failure(campaign, contact, Disposition.BUSY)
    return policy.after_attempt(campaign, contact, Disposition.BUSY, NOW)


@pytest.mark.parametrize("end", [True, False])
def test_failures_move_to_the_next_number_then_end_the_contact_only_when_asked(end: bool) -> None:
    campaign = _campaign(end)
    contact = Contact(
        id="ct_x",
        phone_number="+12125550180",
        alternate_numbers=["+12125550181"],
        number_index=0,
        failures_on_number=0,
        attempts_made=0,
        time_zones=["America/New_York"],
        call_at=None,
    )
    steps = [_fail(campaign, contact) for _ in range(4)]
    # Two failures on the first number move the contact to its second one.
    assert all(isinstance(step, policy.Retry) for step in steps[:3])
    assert contact.number_index == 1
    if end:
        # Two failures on the last number: nothing left to move to, the contact ends.
        assert steps[3] == policy.Final(Disposition.BUSY)
    else:
        # Otherwise it keeps being called on its last number, up to max_attempts.
        assert isinstance(steps[3], policy.Retry)
