"""Status callbacks: signatures checked over the public URL, forged ones change nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from bridge.app_keys import SESSIONMAKER
from bridge.settings import SANDBOX_AUTH_TOKEN
from campaigns.models import CallEvent
from tests.conftest import eventually

KEY = "webhook-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def client(app_client: Any) -> Any:
    # A long ring keeps the call live while the test forges callbacks for it.
    return await app_client(api_keys=(KEY,), sandbox_ring_seconds=60)


async def live_attempt(client: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/campaigns", json={"name": "sig"}, headers=AUTH)
    campaign_id = (await response.json())["id"]
    await client.post(
        f"/api/v1/campaigns/{campaign_id}/contacts",
        data=b"phone_number\n+12125550101\n",
        headers={**AUTH, "Content-Type": "text/csv"},
    )
    await client.post(f"/api/v1/campaigns/{campaign_id}/start", headers=AUTH)

    async def ringing() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/campaigns/{campaign_id}/calls", headers=AUTH)
        calls = await response.json()
        return calls[0] if calls and calls[0]["status"] == "ringing" else None

    return dict(await eventually(ringing))


def signed(client: Any, path: str, params: dict[str, str], token: str = SANDBOX_AUTH_TOKEN) -> str:
    url = f"http://127.0.0.1:{client.server.port}{path}"
    return str(RequestValidator(token).compute_signature(url, params))


async def attempt_now(client: Any, attempt: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/api/v1/campaigns/{attempt['campaign_id']}/calls", headers=AUTH)
    return dict((await response.json())[0])


def completed_params(attempt: dict[str, Any]) -> dict[str, str]:
    return {
        "CallSid": attempt["provider_call_id"],
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": attempt["phone_number"],
        "CallStatus": "completed",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "7",
        "CallDuration": "42",
        "SipResponseCode": "200",
    }


@pytest.mark.parametrize("signature", ["forged", "wrong-token", "missing"])
async def test_bad_signature_is_refused_and_changes_nothing(client: Any, signature: str) -> None:
    attempt = await live_attempt(client)
    path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt['id']})}"
    params = completed_params(attempt)
    headers = {
        "forged": {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
        "wrong-token": {"X-Twilio-Signature": signed(client, path, params, token="not-the-token")},
        "missing": {},
    }[signature]
    response = await client.post(path, data=params, headers=headers)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "bad_signature"
    assert await attempt_now(client, attempt) == attempt


async def test_signed_callback_is_applied_once(client: Any) -> None:
    attempt = await live_attempt(client)
    path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt['id']})}"
    params = completed_params(attempt)
    headers = {"X-Twilio-Signature": signed(client, path, params)}
    for _ in range(2):  # Twilio delivers some callbacks twice
        response = await client.post(path, data=params, headers=headers)
        assert response.status == 204
    after = await attempt_now(client, attempt)
    assert after["status"] == "completed"
    assert after["talk_seconds"] == 42
    assert after["outcome"] == "answered"
    # Stored once and applied once: the second copy was recognised, not applied again.
    async with client.app[SESSIONMAKER]() as session:
        completed = (
            await session.execute(
                select(CallEvent.applied).where(
                    CallEvent.attempt_id == attempt["id"],
                    CallEvent.payload["CallStatus"].as_string() == "completed",
                )
            )
        ).scalars()
        assert list(completed) == [True]


async def test_signature_covers_the_query_string(client: Any) -> None:
    attempt = await live_attempt(client)
    params = completed_params(attempt)
    signed_path = f"/webhooks/twilio/status?{urlencode({'attempt_id': attempt['id']})}"
    other_path = f"/webhooks/twilio/status?{urlencode({'attempt_id': 'att_someoneelse'})}"
    headers = {"X-Twilio-Signature": signed(client, signed_path, params)}
    response = await client.post(other_path, data=params, headers=headers)
    assert response.status == 403
    assert await attempt_now(client, attempt) == attempt
