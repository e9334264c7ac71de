"""The relay loop: one Twilio Media Stream and one agent conversation.

Twilio -> agent: each `media` payload becomes a `user_audio_chunk`, each `mark` echo tells
what the callee has heard. Agent -> Twilio: each `audio` event becomes `media` messages (the
call's AudioPath converts the agent's format, or passes μ-law 8000 untouched), with
`mark`s between; an `interruption` drops the agent audio older than it not sent yet (what
conversion still holds of it too), and a `clear` drops what Twilio holds unplayed (see
playback.py). When either side ends, the other is
closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from bridge.media import twilio_wire
from bridge.media.agent_wire import Audio, Interruption
from bridge.media.audio_formats import PASSTHROUGH, AudioPath
from bridge.media.conversation import AgentConversation
from bridge.media.playback import Playback
from bridge.media.twilio_wire import Mark, Media, Stop

log = logging.getLogger(__name__)


async def _caller_to_agent(
    twilio: web.WebSocketResponse, agent: AgentConversation, playback: Playback, audio: AudioPath
) -> str:
    async for message in twilio:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        try:
            event = twilio_wire.parse(message.data)
        except ValueError:
            log.warning("Media Stream sent a message that is not JSON; ignored")
            continue
        if isinstance(event, Media):
            chunk = audio.to_agent(event.payload)
            if chunk is not None:
                await agent.send_audio(chunk, encoded_here=audio.converts_to_agent)
        elif isinstance(event, Mark):
            playback.echoed(event.name)
        elif isinstance(event, Stop):
            return "caller"
    return "caller"


async def _agent_to_caller(
    twilio: web.WebSocketResponse, playback: Playback, agent: AgentConversation, audio: AudioPath
) -> str:
    encoded_here = audio.converts_to_caller
    while True:
        item = await agent.outbox.get()
        if item is None:
            if not twilio.closed:
                # The agent has gone: the last of its audio still in conversion is sent.
                for payload in audio.caller_tail():
                    await playback.play(payload, encoded_here=True)
            return "agent"
        if twilio.closed:
            return "caller"
        if isinstance(item, Interruption):
            # In the outbox's order: everything converted so far was said before the
            # interruption (later audio comes after it), so what conversion still holds is cut.
            audio.interrupted()
            await playback.interrupt()
        elif isinstance(item, Audio) and not agent.is_stale(item):
            for payload in audio.to_caller(item.payload):
                await playback.play(payload, encoded_here=encoded_here)


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
        for task in (inbound, outbound):
            task.cancel()
        await asyncio.gather(inbound, outbound, return_exceptions=True)
        # With <Connect>, Twilio ends the call once our side of the stream is closed.
        await agent.close()
        await twilio.close()
    return ended_by
