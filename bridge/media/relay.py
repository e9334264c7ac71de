"""The relay loop: one Twilio Media Stream and one agent conversation.

Twilio -> agent: each `media` payload becomes a `user_audio_chunk`, each `mark` echo tells
what the callee has heard. Agent -> Twilio: each `audio` event becomes `media` messages (the
call's AudioPath converts the agent's format, or passes μ-law 8000 untouched), with
`mark`s between; an `interruption` drops the agent audio older than it not sent yet (what
conversion still holds of it too), and a `clear` drops what Twilio holds unplayed (see
playback.py). Agent audio is sent by the conversation's own reader, through this call's
CallerSink: one task woken per agent frame, not a queue and a second task. When either side
ends, the other is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from bridge.media.agent_wire import Audio, Interruption
from bridge.media.audio_formats import PASSTHROUGH, AudioPath
from bridge.media.conversation import AgentConversation
from bridge.media.playback import Playback
from bridge.telephony.twilio import media_wire
from bridge.telephony.twilio.media_wire import Mark, Media, Stop

log = logging.getLogger(__name__)


async def _caller_to_agent(
    twilio: web.WebSocketResponse, agent: AgentConversation, playback: Playback, audio: AudioPath
) -> str:
    # Looked up once: the loop runs 50 times a second.
    to_agent = audio.to_agent
    send = agent.audio_sender(encoded_here=audio.converts_to_agent)
    async for message in twilio:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        try:
            event = media_wire.parse(message.data)
        except ValueError:
            log.warning("Media Stream sent a message that is not JSON; ignored")
            continue
        if type(event) is Media:
            chunk = to_agent(event.payload)
            if chunk is not None:
                await send(chunk)
        elif isinstance(event, Mark):
            playback.echoed(event.name)
        elif isinstance(event, Stop):
            return "caller"
    return "caller"


class CallerSink:
    """The agent's audio as this call's Twilio `media` messages (the conversation's AudioSink).

    Its sends are awaited by the conversation's reader: while Twilio's side cannot take more,
    the agent is not read either. Audio for a Twilio side that has gone is dropped: the relay
    learns of the caller's end from the caller's own side."""

    __slots__ = ("_audio", "_play", "_playback", "_to_caller", "_twilio")

    def __init__(self, twilio: web.WebSocketResponse, playback: Playback, audio: AudioPath) -> None:
        self._twilio = twilio
        self._playback = playback
        self._play = playback.play
        self._audio = audio
        # Passed through, an agent payload is a Twilio payload as it is: no list per frame.
        self._to_caller = audio.to_caller if audio.converts_to_caller else None

    async def audio(self, event: Audio) -> None:
        if self._twilio.closed:
            return
        try:
            if self._to_caller is None:
                await self._play(event.payload)
                return
            for payload in self._to_caller(event.payload):
                await self._play(payload, encoded_here=True)
        except ConnectionError:
            return  # Twilio's side went in between: its reader ends the relay

    async def interruption(self, event: Interruption) -> None:
        # In the agent's order: everything converted so far was said before the interruption
        # (later audio comes after it), so what conversion still holds is cut.
        self._audio.interrupted()
        if self._twilio.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self._playback.interrupt()


async def _agent_to_caller(
    twilio: web.WebSocketResponse, playback: Playback, agent: AgentConversation, audio: AudioPath
) -> str:
    # What the agent said while the stream was set up is sent first; from then on the
    # conversation's reader sends each event itself, and this task only waits for the end.
    await agent.attach(CallerSink(twilio, playback, audio))
    await agent.ended.wait()
    if not twilio.closed:
        # The agent has gone: the last of its audio still in conversion is sent.
        for payload in audio.caller_tail():
            await playback.play(payload, encoded_here=True)
    return "agent"


async def relay(
    twilio: web.WebSocketResponse,
    stream_sid: str,
    agent: AgentConversation,
    audio: AudioPath | None = None,
) -> str:
    """Run until one side ends; returns which one did ("caller" or "agent")."""
    audio = audio or AudioPath(PASSTHROUGH)
    playback = Playback(twilio, stream_sid)
    inbound = asyncio.create_task(_caller_to_agent(twilio, agent, playback, audio), name="relay-in")
    outbound = asyncio.create_task(
        _agent_to_caller(twilio, playback, agent, audio), name="relay-out"
    )
    ended_by = "caller"
    try:
        done, _ = await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        with contextlib.suppress(Exception):
            ended_by = first.result()
    finally:
        agent.detach()
        for task in (inbound, outbound):
            task.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)
        # With <Connect>, Twilio ends the call once our side of the stream is closed.
        await agent.close()
        await twilio.close()
    return ended_by
