"""The relay speaks the agent's whole protocol (issue 13, points 2 and 3).

The service runs for real (TwiML handler, /media/twilio/…, the relay, the dashboard API); the
agent is the scripted one of tests/scripted_agent.py and the test plays Twilio's side, so each
message and what the relay does with it can be checked. Everything the relay sends the agent is
validated against ElevenLabs' AsyncAPI (tests/specs), and so is everything the scripts send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from bridge.app_keys import SESSIONMAKER
from bridge.media.audio_formats import audioop
from bridge.sandbox import agent_audio, agent_events
from campaigns.models import Attempt
from tests.agent_fixtures import TwilioStreamSide, answered_attempt, fetch_twiml, open_stream
from tests.conftest import eventually
from tests.scripted_agent import ScriptedAgent, audio, frame
from tests.service import API_KEY
from tests.specs.asyncapi import Tally


@pytest.fixture
async def agent(aiohttp_server: Any) -> ScriptedAgent:
    scripted = ScriptedAgent()
    await aiohttp_server(scripted.app(), port=scripted.port)
    return scripted


@pytest.fixture
async def client(app_client: Any, agent: Any) -> Any:
    return await app_client(
        api_keys=(API_KEY,),
        elevenlabs_url=f"http://127.0.0.1:{agent.port}",
    )


def validated(agent: ScriptedAgent) -> tuple[Tally, Tally]:
    """Every message both ways checked against the AsyncAPI; the counts are printed."""
    server, client = Tally("server"), Tally("client")
    for message in agent.sent:
        server.check(message)
    for message in agent.received:
        client.check(message)
    print(server.report())
    print(client.report())
    assert server.errors == [] and client.errors == []
    return server, client


async def stored(client: Any, attempt_id: str) -> Attempt:
    async with client.app[SESSIONMAKER]() as session:
        attempt = await session.get(Attempt, attempt_id)
    assert attempt is not None
    return attempt


class TwilioSide(TwilioStreamSide):
    """Twilio's end that also keeps what the relay sends, and echoes marks when told to."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call_sid: str) -> None:
        super().__init__(ws, call_sid)
        self.got: list[dict[str, Any]] = []
        self.closed = False

    async def read_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async def read() -> None:
            while not predicate():
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    self.closed = True
                    return
                self.got.append(json.loads(message.data))

        await asyncio.wait_for(read(), within)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.got if m["event"] == event]

    async def echo(self, mark: dict[str, Any]) -> None:
        await self.send("mark", mark={"name": mark["mark"]["name"]})


async def connect(client: Any, session: aiohttp.ClientSession, attempt: Attempt) -> TwilioSide:
    url, parameters = await fetch_twiml(client, attempt)
    twilio = TwilioSide(await open_stream(session, url), str(attempt.provider_call_id))
    await twilio.begin(parameters)
    return twilio


async def test_an_unknown_client_tool_gets_an_error_result_within_a_second_and_the_call_goes_on(
    client: Any, agent: ScriptedAgent
) -> None:
    call_sent: dict[str, float] = {}

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await me.send(ws, audio(1, frame("agent", 1)))
        call_sent["at"] = time.monotonic()
        await me.send(
            ws, agent_events.client_tool_call("transfer_to_desk", "call_1", {"desk": "billing"}, 2)
        )
        await me.listen(ws, lambda: bool(me.tool_results))
        # The agent goes on with the conversation, and ends it normally.
        await me.send(ws, agent_events.agent_response("Let me go on, then.", 3))
        await me.send(ws, audio(4, frame("agent", 4)))
        await me.listen(ws, lambda: len(me.user_audio) >= 3)
        await ws.close()

    agent.script = script
    attempt = await answered_attempt(client.app)
    async with aiohttp.ClientSession() as session:
        twilio = await connect(client, session, attempt)
        for index in range(3):
            await twilio.media(index, frame("caller", index))
        await twilio.read_until(lambda: twilio.closed)
    arrived, result = agent.tool_results[0]
    assert arrived - call_sent["at"] < 1.0
    assert result["tool_call_id"] == "call_1" and result["is_error"] is True
    assert "no client tool named 'transfer_to_desk'" in result["result"]
    # Both agent audio events reached the callee: the conversation went on after the tool.
    assert [m["media"]["payload"] for m in twilio.of("media")] == [
        frame("agent", 1),
        frame("agent", 4),
    ]
    fresh = await stored(client, attempt.id)
    assert [(c["tool_name"], c["tool_call_id"], c["is_error"]) for c in fresh.tool_calls or []] == [
        ("transfer_to_desk", "call_1", True)
    ]
    assert fresh.agent_error is None
    _, sent_to_agent = validated(agent)
    assert sent_to_agent.counts["client_tool_result"] == 1


def long_frame(index: int) -> str:
    """100 ms of agent audio (800 bytes): one event, one mark."""
    return base64.b64encode(f"agent:{index:06d}:".encode().ljust(800, b"\xff")).decode()


async def test_an_interruption_clears_only_the_audio_whose_mark_has_not_come_back(
    client: Any, agent: ScriptedAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.media.playback")
    go: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        while (messages := await go.get()) is not None:
            for message in messages:
                await me.send(ws, message)
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    async with aiohttp.ClientSession() as session:
        twilio = await connect(client, session, attempt)

        # 1. Ten 100 ms events, each with its mark; the callee has heard four (their marks came
        # back) when it cuts the agent off.
        await go.put([audio(i, long_frame(i)) for i in range(1, 11)])
        await twilio.read_until(lambda: len(twilio.of("mark")) == 10)
        assert [m["event"] for m in twilio.got] == ["media", "mark"] * 10
        for mark in twilio.of("mark")[:4]:
            await twilio.echo(mark)
        await go.put([{"type": "interruption", "interruption_event": {"event_id": 10}}])
        await twilio.read_until(lambda: bool(twilio.of("clear")))
        unechoed = len(twilio.of("mark")) - 4
        # As Twilio does on a clear, the cleared audio's marks come back at once.
        for mark in twilio.of("mark")[4:]:
            await twilio.echo(mark)

        # 2. Two short events (20 ms each): one mark follows them once no more audio comes.
        # Both heard, an interruption has nothing to clear: the audio after it comes through
        # with no clear before it.
        await go.put([audio(i, frame("agent", i)) for i in (11, 12)])
        await twilio.read_until(lambda: len(twilio.of("mark")) == 11)
        await twilio.echo(twilio.of("mark")[-1])
        await go.put(
            [
                {"type": "interruption", "interruption_event": {"event_id": 12}},
                audio(13, long_frame(13)),
                audio(14, long_frame(14)),
            ]
        )
        await twilio.read_until(lambda: len(twilio.of("mark")) == 13)

        # 3. Cut off again with neither heard: only those two are cleared.
        await go.put([{"type": "interruption", "interruption_event": {"event_id": 14}}])
        await twilio.read_until(lambda: len(twilio.of("clear")) == 2)
        await twilio.send("stop")
        await go.put(None)

    events = [m["event"] for m in twilio.got]
    first_clear = events.index("clear")
    assert events[:first_clear] == ["media", "mark"] * 10  # nothing else before it
    # The second interruption found everything heard: 13 and 14 came with no clear before them.
    assert events[first_clear + 1 :] == ["media", "media", "mark"] + ["media", "mark"] * 2 + [
        "clear"
    ]
    cleared = [r.getMessage() for r in caplog.records if "cleared" in r.getMessage()]
    measured = [tuple(map(int, re.findall(r"(\d+) ms", line))) for line in cleared]
    # (ms cleared, ms heard so far): six unechoed events of 100 ms, then two; the echoes of
    # cleared audio never count as heard (400 + 40 ms heard, not 400 + 600 + 40).
    assert unechoed == 6
    assert measured == [(unechoed * 100, 4 * 100), (2 * 100, 4 * 100 + 2 * 20)]
    validated(agent)


def pcm_16000(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


async def test_after_an_interruption_no_converted_audio_of_the_cut_turn_is_played(
    client: Any, agent: ScriptedAgent
) -> None:
    """A PCM 16000 agent says a tone, is cut off, then says silence. Converting its audio holds
    some back (the resampler's delay and a frame not yet complete, ~35 ms): none of that may be
    played after the interruption, and none of the new turn may be lost."""
    agent.output_format = "pcm_16000"
    tone_frames, new_frames = 10, 8
    t = np.arange(tone_frames * 320) / 16000
    tone = np.rint(6000 * np.sin(2 * np.pi * 440 * t))
    go: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        while (messages := await go.get()) is not None:
            for message in messages:
                await me.send(ws, message)
        await ws.close()  # the agent hangs up after its new turn

    agent.script = script
    attempt = await answered_attempt(client.app)
    async with aiohttp.ClientSession() as session:
        twilio = await connect(client, session, attempt)
        await go.put([audio(i + 1, pcm_16000(tone[i * 320 : (i + 1) * 320])) for i in range(10)])
        # The relay has converted the whole tone (all but the ~35 ms it holds) when the agent
        # is cut off: an interruption before that would find nothing held.
        await twilio.read_until(lambda: len(twilio.of("media")) == tone_frames - 1)
        silence = pcm_16000(np.zeros(320))
        await go.put(
            [{"type": "interruption", "interruption_event": {"event_id": tone_frames}}]
            + [audio(tone_frames + 1 + i, silence) for i in range(new_frames)]
        )
        await go.put(None)
        await twilio.read_until(lambda: twilio.closed)

    events = [m["event"] for m in twilio.got]
    cleared_at = events.index("clear")
    after = [
        np.frombuffer(audioop.ulaw2lin(base64.b64decode(m["media"]["payload"]), 2), "<i2")
        for m in twilio.got[cleared_at:]
        if m["event"] == "media"
    ]
    # Nothing of the cut tone (peaks of 6000) after the clear: every frame is the new turn's
    # silence, give or take the resampler's dither (±1 before μ-law, ±8 after it).
    peaks = [int(np.abs(frame).max()) for frame in after]
    assert max(peaks) <= agent_audio.SILENCE_PEAK, f"peaks after the clear: {peaks}"
    # And the new turn whole: its 8 frames, the last ones sent as the agent hung up.
    assert len(after) == new_frames
    validated(agent)


async def test_an_error_from_the_agent_ends_the_call_with_its_message_stored(
    client: Any, agent: ScriptedAgent
) -> None:
    errored: dict[str, float] = {}

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        await me.send(ws, audio(1, frame("agent", 1)))
        await me.listen(ws, lambda: len(me.user_audio) >= 2)
        errored["at"] = time.monotonic()
        await me.send(ws, agent_events.error(1002, "llm_timeout", "The LLM did not answer."))
        # It does not close the socket itself: the relay must end the call on the error alone.
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    async with aiohttp.ClientSession() as session:
        twilio = await connect(client, session, attempt)
        for index in range(2):
            await twilio.media(index, frame("caller", index))
        await twilio.read_until(lambda: twilio.closed)
        ended = time.monotonic()
    assert ended - errored["at"] < 1.0
    await asyncio.wait_for(agent.closed.wait(), 5)
    fresh = await stored(client, attempt.id)
    assert fresh.agent_error == "1002 llm_timeout: The LLM did not answer."
    validated(agent)


async def test_the_live_transcript_is_stored_and_served_while_the_call_is_live(
    client: Any, agent: ScriptedAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.media")

    async def script(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
        for message in (
            agent_events.internal_tentative_agent_response("Hello Ada"),
            agent_events.agent_response("Hello Ada, this is the clinic.", 1),
            audio(2, frame("agent", 2)),
            agent_events.vad_score(0.91),
            agent_events.internal_turn_probability(0.4),
            agent_events.tentative_user_transcript("Yes", 3),
            agent_events.user_transcript("Yes, speaking.", 4),
            agent_events.agent_chat_response_part("Your", "delta", 5),
            agent_events.agent_response("Your appointment is on Monday at nine.", 6),
            agent_events.agent_response_correction(
                "Your appointment is on Monday at nine.", "Your appointment is on", 7
            ),
            agent_events.context_usage(8, 1200),
        ):
            await me.send(ws, message)
        await ws.send_json({"type": "brand_new_event", "brand_new_event": {"x": 1}})
        await me.listen(ws, lambda: False)

    agent.script = script
    attempt = await answered_attempt(client.app)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        twilio = await connect(client, session, attempt)

        async def served() -> list[dict[str, Any]]:
            response = await client.get(
                f"/api/v1/dashboard/contacts/{attempt.contact_id}", headers=headers
            )
            assert response.status == 200
            (call,) = (await response.json())["calls"]
            lines = call["live_transcript"] or []
            return lines if len(lines) == 3 and lines[-1].get("interrupted") else []

        lines = await eventually(served, within=10, what="the live transcript served")
        # Still live: the stream is open and the attempt in progress.
        assert (await stored(client, attempt.id)).status == "in-progress"
        await twilio.send("stop")
        await twilio.read_until(lambda: twilio.closed)
    assert [(line["role"], line["message"]) for line in lines] == [
        ("agent", "Hello Ada, this is the clinic."),
        ("user", "Yes, speaking."),
        ("agent", "Your appointment is on"),
    ]
    # vad_score, internal_*, text parts, context usage and an unknown type: ignored, quietly.
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert [m["media"]["payload"] for m in twilio.of("media")] == [frame("agent", 2)]
    validated(agent)
