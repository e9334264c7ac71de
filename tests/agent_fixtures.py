"""A service with one answered call waiting for its agent, and helpers to play Twilio's side."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from bridge.app_keys import SESSIONMAKER
from bridge.settings import SANDBOX_AUTH_TOKEN
from campaigns.clock import utcnow
from campaigns.ids import new_id
from campaigns.models import Attempt, AttemptStatus, Campaign, CampaignStatus
from tests.live_calls import first_call


async def answered_attempt(
    app: Any,
    *,
    agent_connection: str = "stream",
    variables: dict[str, Any] | None = None,
    phone: str = "+12125550101",
    conversation_id: str | None = None,
    status: str = AttemptStatus.IN_PROGRESS,
    max_attempts: int = 3,
    agent_id: str = "agent_test",
) -> Attempt:
    """A running campaign's contact with a live attempt, as the dispatcher would leave it."""
    now = utcnow()
    campaign = Campaign(
        id=new_id("cmp"),
        name="agents",
        agent_id=agent_id,
        agent_connection=agent_connection,
        agent_phone_number_id="phnum_test",
        status=CampaignStatus.RUNNING,
        max_attempts=max_attempts,
        retry_delay_seconds=60,
        started_at=now,
    )
    contact, attempt = first_call(
        campaign.id,
        phone,
        contact={"dynamic_variables": variables or {"first_name": "Ada"}},
        status=status,
        conversation_id=conversation_id,
        answered_at=now if status == AttemptStatus.IN_PROGRESS else None,
    )
    async with app[SESSIONMAKER].begin() as session:
        session.add(campaign)
        await session.flush()
        session.add(contact)
        await session.flush()
        session.add(attempt)
    return attempt


def twilio_signature(url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(SANDBOX_AUTH_TOKEN).compute_signature(url, params))


async def fetch_twiml(client: Any, attempt: Attempt) -> tuple[str, dict[str, str]]:
    """Ask for the answered call's TwiML as Twilio does; returns the Stream URL and parameters."""
    path = f"/webhooks/twilio/twiml?attempt_id={attempt.id}"
    params = {
        "CallSid": str(attempt.provider_call_id),
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": attempt.phone_number,
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
    }
    url = f"http://127.0.0.1:{client.server.port}{path}"
    response = await client.post(
        path, data=params, headers={"X-Twilio-Signature": twilio_signature(url, params)}
    )
    assert response.status == 200, await response.text()
    root = ElementTree.fromstring(await response.text())
    stream = root.find("./Connect/Stream")
    assert stream is not None
    parameters = {str(p.get("name")): str(p.get("value")) for p in stream.findall("Parameter")}
    return str(stream.get("url")), parameters


class TwilioStreamSide:
    """Twilio's end of a Media Stream, written out from the protocol (not our serializer)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.sequence = 0

    async def send(self, event: str, **body: Any) -> None:
        self.sequence += 1
        message = {"event": event, "sequenceNumber": str(self.sequence), **body}
        if event != "connected":
            message["streamSid"] = self.stream_sid
        await self.ws.send_str(json.dumps(message))

    async def begin(self, parameters: dict[str, str]) -> None:
        await self.send("connected", protocol="Call", version="1.0.0")
        await self.send(
            "start",
            start={
                "accountSid": "AC" + "0" * 32,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        )

    async def media(self, index: int, payload: str) -> None:
        await self.send(
            "media",
            media={
                "track": "inbound",
                "chunk": str(index + 1),
                "timestamp": str(index * 20),
                "payload": payload,
            },
        )


async def open_stream(
    session: aiohttp.ClientSession, url: str, *, signature: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    headers = {
        "X-Twilio-Signature": signature if signature is not None else twilio_signature(url, {})
    }
    return await session.ws_connect(url, headers=headers)
