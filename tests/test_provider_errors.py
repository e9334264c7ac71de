"""A Twilio error that says the number itself is unusable ends the contact at once; one that the
account can fix leaves it to be called again. The Twilio adapter classifies the code, the retry
policy decides on the class."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from twilio.base.exceptions import TwilioRestException

from bridge.telephony.twilio import dialer as twilio
from campaigns import policy
from campaigns.models import Contact, Disposition
from tests.policy_fixtures import bare_campaign

NOW = datetime(2026, 6, 1, 15, tzinfo=UTC)


def _step_after_refusal(code: int) -> policy.Retry | policy.Final:
    campaign = bare_campaign()
    contact = Contact(
        id="ct_x",
        phone_number="+12125550180",
        alternate_numbers=[],
        number_index=0,
        failures_on_number=0,
        attempts_made=1,
        time_zones=["America/New_York"],
        call_at=None,
    )
    refusal = twilio._classify(TwilioRestException(400, "/Calls.json", "refused", code=code))
    assert refusal.code == str(code)
    return policy.after_attempt(campaign, contact, Disposition.FAILED, NOW, refusal.error_class)


@pytest.mark.parametrize("code", [21211, 21214, 21215, 21216, 21217, 21202])
def test_an_unusable_number_is_not_called_again(code: int) -> None:
    assert _step_after_refusal(code) == policy.Final(Disposition.FAILED)


@pytest.mark.parametrize("code", [13227, 21210, 21219, 30001])
def test_a_failure_the_number_is_not_to_blame_for_is_retried(code: int) -> None:
    assert isinstance(_step_after_refusal(code), policy.Retry)
