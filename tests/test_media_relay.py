"""The media relay between a Twilio Media Stream and an ElevenLabs conversation WebSocket.

The service runs for real (TwiML handler, /media/twilio/…, the relay); the agent is a scripted
WebSocket server in the test, so that what it sends and receives can be checked frame by frame.
Audio is sent as fast as the sockets take it: a minute of 20 ms frames in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.app import create_app
from bridge.app_keys import SESSIONMAKER
from bridge.media import agent_wire
from bridge.media.agent_wire import Audio, Interruption
from bridge.media.conversation import AgentConversation
from bridge.settings import Settings
from campaigns.models import Attempt
from tests.agent_fixtures import TwilioStreamSide, answered_attempt, fetch_twiml, open_stream
from tests.conftest import eventually, housekeeping_finished
from tests.scripted_agent import ScriptedAgent, audio, frame
from tests.service import free_port

FRAMES = 3000  # 60 s of 20 ms frames


@pytest.fixture
async def agent(aiohttp_server: Any) -> ScriptedAgent:
    scripted = ScriptedAgent(conversation_id=lambda: "conv_relay_test")
    await aiohttp_server(scripted.app(), port=scripted.port)
    return scripted


@pytest.fixture
async def client(aiohttp_server: Any, aiohttp_client: Any, database_url: str, agent: Any) -> Any:

    port = free_port()
    settings = Settings(
        database_url=database_url,
        port=port,
        elevenlabs_url=f"http://127.0.0.1:{agent.port}",
    )
    yield await aiohttp_client(await aiohttp_server(create_app(settings), port=port))
    await housekeeping_finished()


async def receive_twilio(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while len([m for m in received if m["event"] == "media"]) < count:
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, message
        received.append(json.loads(message.data))
    return received


async def test_a_minute_of_audio_passes_both_ways_in_order_with_every_ping_answered(
    client: Any, agent: ScriptedAgent
) -> None:
    ping_ids = list(range(100_000, 100_000 + FRAMES // 50))

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        async def speak() -> None:
            for index in range(FRAMES):
                if index % 50 == 0:
                    ping = ping_ids[index // 50]
                    await ws.send_json({"type": "ping", "ping_event": {"event_id": ping}})
                await ws.send_json(audio(index + 1, frame("agent", index)))

        speaking = asyncio.create_task(speak())
        await me.listen(ws, lambda: len(me.user_audio) >= FRAMES and len(me.pongs) >= len(ping_ids))
        await speaking
        await me.listen(ws, lambda: False)  # until the caller hangs up

    agent.script = script
    attempt = await answered_attempt(client.app, variables={"first_name": "Ada", "n": 3})
    url, parameters = await fetch_twiml(client, attempt)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        receiving = asyncio.create_task(receive_twilio(ws, FRAMES))
        for index in range(FRAMES):
            await twilio.media(index, frame("caller", index))
        got = await asyncio.wait_for(receiving, 60)
        assert await asyncio.wait_for(_until(lambda: len(agent.user_audio) >= FRAMES), 60)
        await twilio.send("stop", stop={"callSid": twilio.call_sid})
        stopped = time.monotonic()
        await asyncio.wait_for(agent.closed.wait(), 5)
        assert agent.closed_at is not None and agent.closed_at - stopped < 1.0
        await ws.close()

    assert await asyncio.wait_for(_until_stored(client, attempt.id, "conv_relay_test"), 10)
    assert agent.connections == 1
    assert agent.initiations == [
        {
            "type": "conversation_initiation_client_data",
            "dynamic_variables": {"first_name": "Ada", "n": 3},
        }
    ]
    media = [m for m in got if m["event"] == "media"]
    assert [m["media"]["payload"] for m in media] == [frame("agent", i) for i in range(FRAMES)]
    assert {m["streamSid"] for m in media} == {twilio.stream_sid}
    assert not [m for m in got if m["event"] == "clear"]
    assert agent.user_audio == [frame("caller", i) for i in range(FRAMES)]
    assert agent.pongs == ping_ids


async def _until_stored(client: Any, attempt_id: str, conversation_id: str) -> bool:
    while True:
        async with client.app[SESSIONMAKER]() as session:
            attempt = await session.get(Attempt, attempt_id)
        if attempt is not None and attempt.conversation_id == conversation_id:
            return True
        await asyncio.sleep(0.02)


async def _until(predicate: Callable[[], bool]) -> bool:
    while not predicate():  # noqa: ASYNC110 (a plain counter, polled with a deadline)
        await asyncio.sleep(0.01)
    return True


async def test_an_interruption_before_the_stream_drops_the_queued_audio_and_clears_nothing(
    client: Any, agent: ScriptedAgent
) -> None:
    """Audio interrupted before it reached Twilio is dropped, not sent; and as Twilio holds
    none of it, no `clear` is needed (the one after marks is in test_agent_protocol.py)."""
    spoken = asyncio.Event()

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        # All of this happens while the call's stream is still being set up: it is queued.
        for event_id in range(1, 6):
            await ws.send_json(audio(event_id, frame("before", event_id)))
        await ws.send_json({"type": "interruption", "interruption_event": {"event_id": 5}})
        await ws.send_json(audio(4, frame("late", 4)))  # older than the interruption
        for event_id in range(6, 9):
            await ws.send_json(audio(event_id, frame("after", event_id)))
        spoken.set()
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    url, parameters = await fetch_twiml(client, attempt)
    await asyncio.wait_for(spoken.wait(), 10)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        got = await asyncio.wait_for(receive_twilio(ws, 3), 10)
        await twilio.send("stop")
        await ws.close()
    assert "clear" not in [m["event"] for m in got]
    media = [m for m in got if m["event"] == "media"]
    assert [m["media"]["payload"] for m in media] == [frame("after", i) for i in range(6, 9)]
    assert agent.connections == 1  # opened while answering the TwiML request, used by the stream


async def test_the_agent_hanging_up_ends_the_stream_within_a_second(
    client: Any, agent: ScriptedAgent
) -> None:
    closing: dict[str, float] = {}

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await me.listen(ws, lambda: len(me.user_audio) >= 3)
        closing["at"] = time.monotonic()
        await ws.close()

    agent.script = script
    attempt = await answered_attempt(client.app)
    url, parameters = await fetch_twiml(client, attempt)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        for index in range(3):
            await twilio.media(index, frame("caller", index))
        message = await asyncio.wait_for(ws.receive(), 5)
        ended = time.monotonic()
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ended - closing["at"] < 1.0


async def test_agent_audio_that_cannot_be_decoded_ends_the_call_cleanly(
    client: Any, agent: ScriptedAgent
) -> None:
    """A PCM agent's chunk that is not base64 cannot be converted: the call ends, both sides
    closed with a close frame, instead of being left half-relayed."""
    agent.output_format = "pcm_16000"

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await me.listen(ws, lambda: len(me.user_audio) >= 1)
        await me.send(ws, audio(1, "abcde"))  # 5 base64 characters: no whole byte count
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    url, parameters = await fetch_twiml(client, attempt)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin(parameters)
        for index in range(3):
            await twilio.media(index, frame("caller", index))
        message = await asyncio.wait_for(ws.receive(), 5)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    await asyncio.wait_for(agent.closed.wait(), 5)


async def test_a_bad_token_or_signature_is_refused_before_any_agent_connection(
    client: Any, agent: ScriptedAgent
) -> None:
    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    other = await answered_attempt(client.app, phone="+12125550102")
    url = f"ws://127.0.0.1:{client.server.port}/media/twilio/{attempt.id}"
    async with aiohttp.ClientSession() as session:
        for parameters in (
            {"attempt_id": attempt.id, "token": "9999999999.deadbeef"},
            {"attempt_id": attempt.id},
        ):
            ws = await open_stream(session, url)
            twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
            await twilio.begin(parameters)
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1008
        # A genuine token of another attempt does not open this one.
        _, genuine = await fetch_twiml(client, other)
        await asyncio.wait_for(agent.connected.wait(), 10)  # the other call's own conversation
        connections_before = agent.connections
        ws = await open_stream(session, url)
        twilio = TwilioStreamSide(ws, str(attempt.provider_call_id))
        await twilio.begin({"attempt_id": attempt.id, "token": genuine["token"]})
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1008
        assert agent.connections == connections_before
        for signature in ("", "forged"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await open_stream(session, url, signature=signature)
            assert refused.value.status == 403
    # Only the TwiML request for the other attempt opened an agent conversation, and as no
    # stream claimed it, its id was not recorded as that call's conversation.
    assert agent.connections == 1
    async with client.app[SESSIONMAKER]() as session:
        unclaimed = await session.get(Attempt, other.id)
    assert unclaimed is not None and unclaimed.conversation_id is None


class _FullTwilioSide:
    """Stands where the relay's CallerSink sends to Twilio: takes each event, then holds the
    conversation's reader there until released, as a Twilio socket that takes no more does."""

    def __init__(self) -> None:
        self.audio_ids: list[int] = []
        self.released = asyncio.Event()

    async def audio(self, event: Audio) -> None:
        self.audio_ids.append(event.event_id)
        await self.released.wait()

    async def interruption(self, event: Interruption) -> None:
        await self.released.wait()


async def test_agent_audio_is_read_as_fast_as_twilio_takes_it_and_a_stuck_send_holds_no_end(
    agent: ScriptedAgent,
) -> None:
    """The conversation's reader hands each audio event to Twilio's side itself and waits for
    it: while Twilio's side takes nothing, nothing more is read from the agent (no audio piles
    up in between; a ping behind the audio waits too). When the call ends with the reader
    stuck there, the conversation still closes at once."""
    speak, more = asyncio.Event(), asyncio.Event()

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await speak.wait()
        await me.send(ws, audio(1, frame("agent", 1)))
        await me.send(ws, {"type": "ping", "ping_event": {"event_id": 77}})
        await me.send(ws, audio(2, frame("agent", 2)))
        listening = asyncio.create_task(me.listen(ws, lambda: False))
        await more.wait()
        await me.send(ws, audio(3, frame("agent", 3)))
        await listening

    agent.script = script
    twilio = _FullTwilioSide()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"ws://127.0.0.1:{agent.port}/v1/convai/conversation?agent_id=agent_x"
        )
        await ws.send_str(agent_wire.initiation({}))
        conversation = AgentConversation(ws)
        conversation.start()
        await asyncio.wait_for(conversation.ready.wait(), 5)
        await conversation.attach(twilio)
        speak.set()
        await eventually(lambda: twilio.audio_ids == [1], within=5, what="the first audio event")
        # The reader waits inside Twilio's send: the ping sent after that audio is not read yet.
        assert agent.pongs == []
        twilio.released.set()
        await eventually(lambda: agent.pongs == [77], within=5, what="the pong, once released")
        assert twilio.audio_ids == [1, 2]
        twilio.released.clear()
        more.set()
        await eventually(lambda: twilio.audio_ids == [1, 2, 3], within=5, what="audio event 3")
        # The call ends while the reader is stuck in a send that Twilio will never take.
        conversation.detach()
        started = time.monotonic()
        await asyncio.wait_for(conversation.close(), 5)
        # (close() ends its reader when waiting for it is cancelled: the bound is the check.)
        assert time.monotonic() - started < 1.0
        await asyncio.wait_for(agent.closed.wait(), 5)
    assert conversation.ended.is_set()
