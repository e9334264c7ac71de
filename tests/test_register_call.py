"""register mode when ElevenLabs cannot answer: the callee hears a goodbye, the attempt fails."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any

import pytest
from aiohttp import web

from bridge.app import create_app
from bridge.app_keys import SESSIONMAKER
from bridge.settings import Settings
from campaigns.models import Attempt, Contact, ContactState
from tests.agent_fixtures import answered_attempt, housekeeping_finished, twilio_signature
from tests.service import free_port


@pytest.fixture
async def broken_agent(aiohttp_server: Any) -> str:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"detail": "agent is not available"}, status=503)

    app = web.Application()
    app.router.add_post("/v1/convai/twilio/register-call", refuse)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def client(aiohttp_server: Any, aiohttp_client: Any, database_url: str, broken_agent: str):
    port = free_port()
    settings = Settings(database_url=database_url, port=port, elevenlabs_url=broken_agent)
    yield await aiohttp_client(await aiohttp_server(create_app(settings), port=port))
    await housekeeping_finished()


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
