"""Issue 11, point 8: a Twilio request is taken only as it was signed, every parameter once.

The signature covers each form parameter and the URL's query string; a request that names a
parameter twice (an extra `CallStatus=` appended to a signed body, a second `attempt_id` in the
URL) is not what Twilio sends and is refused before anything is stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bridge.app_keys import SESSIONMAKER
from bridge.settings import SANDBOX_AUTH_TOKEN
from campaigns.models import Attempt, AttemptStatus, CallEvent
from tests.agent_fixtures import answered_attempt

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def client(app_client: Any) -> Any:
    return await app_client()


def signature(client: Any, path: str, params: dict[str, str]) -> str:
    url = f"http://127.0.0.1:{client.server.port}{path}"
    return str(RequestValidator(SANDBOX_AUTH_TOKEN).compute_signature(url, params))


def completed(attempt: Attempt) -> dict[str, str]:
    return {
        "CallSid": str(attempt.provider_call_id),
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": attempt.phone_number,
        "CallStatus": "completed",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "7",
        "CallDuration": "42",
    }


async def unchanged(client: Any, attempt: Attempt) -> bool:
    async with client.app[SESSIONMAKER]() as session:
        fresh = await session.get(Attempt, attempt.id)
        events = await session.scalar(select(func.count()).select_from(CallEvent))
    assert fresh is not None
    return fresh.status == AttemptStatus.IN_PROGRESS and fresh.talk_seconds is None and not events


@pytest.mark.parametrize("appended", ["busy", "completed"])
async def test_a_signed_callback_with_a_second_call_status_is_refused(
    client: Any, appended: str
) -> None:
    """Attack: append `&CallStatus=...` to a validly signed status callback (another value, or
    the same one, which the validator's set of values cannot tell apart). Promise: 400 naming
    the repeated parameter, and the attempt and the event log are untouched."""
    attempt = await answered_attempt(client.app)
    path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt.id})}"
    params = completed(attempt)
    body = f"{urlencode(params)}&CallStatus={appended}"
    headers = {**FORM, "X-Twilio-Signature": signature(client, path, params)}
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "repeated_parameter"
    assert "CallStatus" in error["message"]
    assert error["details"] == {"parameters": ["CallStatus"]}
    assert await unchanged(client, attempt)
    # The request as signed is still good.
    response = await client.post(path, data=urlencode(params), headers=headers)
    assert response.status == 204


@pytest.mark.parametrize(
    ("endpoint", "repeated"),
    [("amd", "AnsweredBy"), ("twiml", "CallSid"), ("status", "SequenceNumber")],
)
async def test_every_twilio_endpoint_refuses_a_repeated_parameter(
    client: Any, endpoint: str, repeated: str
) -> None:
    """Attack: a signed AMD callback, TwiML request or status callback with a parameter sent
    twice. Promise: 400, no event stored, no TwiML (so no media token) handed out."""
    attempt = await answered_attempt(client.app)
    path = f"/webhooks/twilio/{endpoint}?{urlencode({'attempt_id': attempt.id})}"
    params = completed(attempt) | {"AnsweredBy": "human"}
    body = f"{urlencode(params)}&{urlencode({repeated: params[repeated]})}"
    headers = {**FORM, "X-Twilio-Signature": signature(client, path, params)}
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["details"] == {"parameters": [repeated]}
    assert await unchanged(client, attempt)


async def test_the_query_string_is_taken_only_as_signed_and_once(client: Any) -> None:
    """Attack: send a signed callback to its URL with a parameter added to the query string (a
    second `attempt_id` naming another attempt, or any other), or sign a URL that names
    attempt_id twice. Promise: a repeat is 400 even when signed, any other change 403; neither
    attempt changes."""
    attempt = await answered_attempt(client.app, phone="+12125550101")
    other = await answered_attempt(client.app, phone="+12125550102")
    params = completed(attempt)
    signed_path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt.id})}"
    headers = {**FORM, "X-Twilio-Signature": signature(client, signed_path, params)}
    for added, status in ((("attempt_id", other.id)), 400), ((("note", "x")), 403):
        altered = f"{signed_path}&{urlencode([added])}"
        response = await client.post(altered, data=urlencode(params), headers=headers)
        assert response.status == status, await response.text()

    twice = f"/webhooks/twilio/status?{urlencode([('attempt_id', attempt.id)] * 2)}"
    headers = {**FORM, "X-Twilio-Signature": signature(client, twice, params)}
    response = await client.post(twice, data=urlencode(params), headers=headers)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["details"] == {"parameters": ["attempt_id"]}
    assert await unchanged(client, attempt)
    assert await unchanged(client, other)
