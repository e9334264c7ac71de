"""Issue 11, point 7: a replayed or borrowed call set-up never reaches an agent.

A TwiML request must come from the attempt's own call, and the media token it hands out opens one
Media Stream, for that call only, whichever node the TwiML request and the WebSocket reach.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update
from twilio.request_validator import RequestValidator

from bridge.app import create_app
from bridge.app_keys import SESSIONMAKER
from bridge.settings import SANDBOX_AUTH_TOKEN, Settings
from campaigns.models import Attempt, AttemptStatus
from tests.agent_fixtures import TwilioStreamSide, answered_attempt
from tests.conftest import housekeeping_finished
from tests.scripted_agent import ScriptedAgent, greet_once
from tests.service import free_port

# Both nodes answer at one public address, as behind a load balancer: Twilio signs that URL.
PUBLIC_URL = "http://callbridge.test"
POLICY_VIOLATION = 1008


@pytest.fixture
async def agent(aiohttp_server: Any) -> ScriptedAgent:
    server = ScriptedAgent(greet_once)
    await aiohttp_server(server.app(), port=server.port)
    return server


@pytest.fixture
async def nodes(
    database_url: str, aiohttp_server: Any, aiohttp_client: Any, agent: ScriptedAgent
) -> AsyncIterator[list[Any]]:
    """Two service nodes on one database, behind one public URL (the database is asked for
    first, so that it outlives the nodes)."""
    clients = []
    for _ in range(2):
        port = free_port()
        settings = Settings(
            database_url=database_url,
            port=port,
            public_url=PUBLIC_URL,
            elevenlabs_url=f"http://127.0.0.1:{agent.port}",
        )
        server = await aiohttp_server(create_app(settings), port=port)
        clients.append(await aiohttp_client(server))
    yield clients
    await housekeeping_finished()


def signature(url: str, params: dict[str, str]) -> str:
    return str(RequestValidator(SANDBOX_AUTH_TOKEN).compute_signature(url, params))


async def ask_twiml(node: Any, attempt_id: str, call_sid: str, to: str) -> aiohttp.ClientResponse:
    """The signed request Twilio makes when a call is answered, with the call named."""
    path = f"/webhooks/twilio/twiml?attempt_id={attempt_id}"
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": to,
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
    }
    headers = {"X-Twilio-Signature": signature(f"{PUBLIC_URL}{path}", params)}
    return await node.post(path, data=params, headers=headers)


async def stream_of(response: aiohttp.ClientResponse) -> tuple[str, dict[str, str]]:
    assert response.status == 200, await response.text()
    stream = ElementTree.fromstring(await response.text()).find("./Connect/Stream")
    assert stream is not None
    parameters = {str(p.get("name")): str(p.get("value")) for p in stream.findall("Parameter")}
    return str(stream.get("url")), parameters


async def connect_stream(
    session: aiohttp.ClientSession, node: Any, url: str, *, signed_url: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    """Open the Stream URL on one node, signed over its public address as Twilio signs it."""
    public_ws = PUBLIC_URL.replace("http://", "ws://")
    assert url.startswith(public_ws), url
    physical = f"ws://127.0.0.1:{node.server.port}{url[len(public_ws) :]}"
    headers = {"X-Twilio-Signature": signature(signed_url or url, {})}
    return await session.ws_connect(physical, headers=headers)


async def first_answer(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The first thing the service says on a stream: agent audio, or a close."""
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type != aiohttp.WSMsgType.TEXT or '"media"' in message.data:
            return message


def refused(message: aiohttp.WSMessage) -> bool:
    return message.type == aiohttp.WSMsgType.CLOSE and message.data == POLICY_VIOLATION


def relayed(message: aiohttp.WSMessage) -> bool:
    return message.type == aiohttp.WSMsgType.TEXT


async def stored(node: Any, attempt_id: str) -> Attempt:
    async with node.app[SESSIONMAKER]() as session:
        attempt = await session.get(Attempt, attempt_id)
    assert attempt is not None
    return attempt


async def waiting_attempt(node: Any, phone: str) -> Attempt:
    """A placed call whose create's answer has not arrived yet: the attempt has no call id."""
    attempt = await answered_attempt(node.app, phone=phone)
    async with node.app[SESSIONMAKER].begin() as session:
        await session.execute(
            update(Attempt)
            .where(Attempt.id == attempt.id)
            .values(provider_call_id=None, status=AttemptStatus.QUEUED, answered_at=None)
        )
    return attempt


async def test_a_signed_twiml_request_for_another_call_gets_no_media_token(
    nodes: list[Any], agent: ScriptedAgent
) -> None:
    """Attack: replay attempt A's signed TwiML URL with call B's CallSid (or an invented one).
    Promise: 403 and no Stream, no token, no agent; an attempt still waiting for its create's
    answer takes a call id only if no other attempt has it."""
    node = nodes[0]
    mine = await answered_attempt(node.app, phone="+12125550101")
    other = await answered_attempt(node.app, phone="+12125550102")
    for sid in (str(other.provider_call_id), "CA" + uuid.uuid4().hex):
        response = await ask_twiml(node, mine.id, sid, mine.phone_number)
        assert response.status == 403, await response.text()
        body = await response.text()
        assert "<Stream" not in body and "token" not in body
        assert (await response.json())["error"]["code"] == "not_this_call"
    assert (await stored(node, mine.id)).provider_call_id == mine.provider_call_id

    waiting = await waiting_attempt(node, "+12125550103")
    taken = await ask_twiml(node, waiting.id, str(other.provider_call_id), waiting.phone_number)
    assert taken.status == 403
    wrong_number = await ask_twiml(node, waiting.id, "CA" + uuid.uuid4().hex, "+12125550199")
    assert wrong_number.status == 403
    assert (await stored(node, waiting.id)).provider_call_id is None
    assert agent.connections == 0

    # Its own call, first to arrive, is bound to it and connected.
    own_sid = "CA" + uuid.uuid4().hex
    _, parameters = await stream_of(
        await ask_twiml(node, waiting.id, own_sid, waiting.phone_number)
    )
    assert parameters["token"]
    assert (await stored(node, waiting.id)).provider_call_id == own_sid


async def test_a_media_token_opens_one_stream_on_whichever_node(nodes: list[Any]) -> None:
    """Attack: connect a second Media Stream with a token already used (on the same node or on
    another one). Promise: the second stream is closed with 1008 before any agent audio; the
    first one works even though it reached another node than the TwiML request."""
    first_node, second_node = nodes
    attempt = await answered_attempt(first_node.app)
    url, parameters = await stream_of(
        await ask_twiml(first_node, attempt.id, str(attempt.provider_call_id), attempt.phone_number)
    )
    async with aiohttp.ClientSession() as session:
        ws = await connect_stream(session, second_node, url)
        await TwilioStreamSide(ws, str(attempt.provider_call_id)).begin(parameters)
        assert relayed(await first_answer(ws))
        await ws.close()
        for node in (first_node, second_node):
            again = await connect_stream(session, node, url)
            await TwilioStreamSide(again, str(attempt.provider_call_id)).begin(parameters)
            assert refused(await first_answer(again))


async def test_a_token_for_one_call_is_refused_on_a_stream_of_another(
    nodes: list[Any], agent: ScriptedAgent
) -> None:
    """Attack: present call A's genuine token in a stream whose `start` names call B.
    Promise: closed with 1008 before any agent connection; the token stays good for call A."""
    node = nodes[0]
    mine = await answered_attempt(node.app, phone="+12125550101")
    other = await answered_attempt(node.app, phone="+12125550102")
    url, parameters = await stream_of(
        await ask_twiml(node, mine.id, str(mine.provider_call_id), mine.phone_number)
    )
    async with aiohttp.ClientSession() as session:
        ws = await connect_stream(session, nodes[1], url)
        await TwilioStreamSide(ws, str(other.provider_call_id)).begin(parameters)
        assert refused(await first_answer(ws))
        assert agent.connections <= 1  # at most the one opened for call A's TwiML on node one
        ws = await connect_stream(session, node, url)
        await TwilioStreamSide(ws, str(mine.provider_call_id)).begin(parameters)
        assert relayed(await first_answer(ws))
        await ws.close()


async def test_the_stream_signature_of_one_call_does_not_open_another(nodes: list[Any]) -> None:
    """Attack: reuse the X-Twilio-Signature of one call's Media Stream handshake for another
    call. Promise: each call's Stream URL is its own, so the borrowed signature gets 403."""
    node = nodes[0]
    mine = await answered_attempt(node.app, phone="+12125550101")
    other = await answered_attempt(node.app, phone="+12125550102")
    my_url, _ = await stream_of(
        await ask_twiml(node, mine.id, str(mine.provider_call_id), mine.phone_number)
    )
    other_url, _ = await stream_of(
        await ask_twiml(node, other.id, str(other.provider_call_id), other.phone_number)
    )
    assert my_url != other_url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refusal:
            await connect_stream(session, node, other_url, signed_url=my_url)
    assert refusal.value.status == 403


@pytest.mark.parametrize("endpoint", ["status", "amd"])
async def test_a_callback_naming_another_attempts_call_is_not_applied(
    nodes: list[Any], endpoint: str
) -> None:
    """Attack: a signed status or AMD callback whose URL names an attempt still waiting for its
    create's answer, carrying another attempt's CallSid. Promise: answered 204 and stored as an
    event of no known call; neither attempt changes and the waiting one takes no call id."""
    node = nodes[0]
    waiting = await waiting_attempt(node, "+12125550101")
    other = await answered_attempt(node.app, phone="+12125550102")
    path = f"/webhooks/twilio/{endpoint}?attempt_id={waiting.id}"
    params = {
        "CallSid": str(other.provider_call_id),
        "AccountSid": "AC" + "0" * 32,
        "CallStatus": "completed",
        "SequenceNumber": "7",
        "CallDuration": "42",
        "AnsweredBy": "machine_end_beep",
    }
    headers = {"X-Twilio-Signature": signature(f"{PUBLIC_URL}{path}", params)}
    response = await node.post(path, data=params, headers=headers)
    assert response.status == 204, await response.text()
    after, untouched = await stored(node, waiting.id), await stored(node, other.id)
    assert (after.provider_call_id, after.status, after.answered_by) == (None, "queued", None)
    assert (untouched.status, untouched.answered_by) == (other.status, other.answered_by)
