"""register mode when ElevenLabs cannot answer: the callee hears a goodbye, the attempt fails."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest
from aiohttp import web

from bridge.app_keys import SESSIONMAKER
from campaigns.models import Attempt, Contact, ContactState
from tests.agent_fixtures import answered_attempt, twilio_signature


@pytest.fixture
async def broken_agent(aiohttp_server: Any) -> str:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"detail": "agent is not available"}, status=503)

    app = web.Application()
    app.router.add_post("/v1/convai/twilio/register-call", refuse)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def client(app_client: Any, broken_agent: str) -> Any:
    return await app_client(elevenlabs_url=broken_agent)


async def test_a_failed_register_call_ends_the_call_politely_and_fails_the_attempt(
    client: Any,
) -> None:
    attempt = await answered_attempt(client.app, agent_connection="register")
    path = f"/webhooks/twilio/twiml?attempt_id={attempt.id}"
    params = {
        "CallSid": str(attempt.provider_call_id),
        "From": "+15005550006",
        "To": attempt.phone_number,
        "CallStatus": "in-progress",
    }
    url = f"http://127.0.0.1:{client.server.port}{path}"
    response = await client.post(
        path, data=params, headers={"X-Twilio-Signature": twilio_signature(url, params)}
    )
    assert response.status == 200
    root = ElementTree.fromstring(await response.text())
    assert [child.tag for child in root] == ["Say", "Hangup"]
    async with client.app[SESSIONMAKER]() as session:
        fresh = await session.get(Attempt, attempt.id)
        contact = await session.get(Contact, attempt.contact_id)
    assert fresh is not None and contact is not None
    assert (fresh.status, fresh.outcome, fresh.error_code) == (
        "failed",
        "failed",
        "agent_unavailable",
    )
    assert fresh.error_message is not None and "503" in fresh.error_message
    # A failure the next attempt may not repeat: the contact is retried.
    assert contact.state == ContactState.PENDING
