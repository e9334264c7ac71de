"""The agent's side of one call: an ElevenLabs conversation WebSocket, read by its own task.

It is opened while Twilio waits for TwiML, before the Media Stream exists, so what the agent
says in the meantime is held; once the stream attaches its AudioSink, what was held goes to it
in order, and from then on the reader hands each audio event straight to the sink and awaits
it: no queue and no second task between the agent and Twilio, and while Twilio's side cannot
take more, the agent's socket is not read (the backpressure reaches the agent). Pings and
client tool calls are answered as they are read, whoever is listening. Transcript turns, tool
calls and an `error` go to the call's LiveRecord; an `error` also ends the conversation, and
with it the call. It counts as open once the agent's metadata has come (or the agent has gone):
the metadata names the audio formats the relay must convert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from bridge.media import agent_wire
from bridge.media.agent_wire import (
    AgentError,
    AgentResponse,
    AgentResponseCorrection,
    Audio,
    ClientToolCall,
    Interruption,
    Metadata,
    Ping,
    UserTranscript,
)
from bridge.media.client_tools import ClientToolRegistry, ToolContext
from bridge.media.live_record import LiveRecord
from bridge.telephony.elevenlabs.client import ElevenLabsClient

log = logging.getLogger(__name__)

ConversationIdListener = Callable[[str], Awaitable[None]]


class AudioSink(Protocol):
    """Where the agent's audio goes once the call's Media Stream has the conversation. Called
    by the conversation's reader, in the agent's order, one event at a time."""

    async def audio(self, event: Audio) -> None: ...

    async def interruption(self, event: Interruption) -> None: ...


class AgentConversation:
    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        on_conversation_id: ConversationIdListener | None = None,
        *,
        record: LiveRecord | None = None,
        tools: ClientToolRegistry | None = None,
    ) -> None:
        self._ws = ws
        self._on_conversation_id = on_conversation_id
        self.record = record
        self._tools = tools or ClientToolRegistry()
        # The agent's error, when it ended the conversation on one.
        self.error: str | None = None
        self.conversation_id: str | None = None
        # What the agent said before a sink was attached, in order.
        self._held: deque[Audio | Interruption] = deque()
        self._sink: AudioSink | None = None
        self._delivering = False  # the reader is inside a sink call
        # Agent audio with an event id up to this one was interrupted: it must not be played.
        self.interrupted_upto = -1
        self.pings_answered = 0
        # As the agent announced them (agent_output_audio_format, user_input_audio_format).
        self.audio_formats: tuple[str | None, str | None] = (None, None)
        self.ready = asyncio.Event()  # the metadata came, or the agent went without it
        self.ended = asyncio.Event()  # the agent has gone; all it said was handed on
        # Only a conversation a Media Stream took is the call's: one opened on another node for
        # the same call, never claimed, must not record its id on the attempt.
        self._claimed = False
        self._reader: asyncio.Task[None] | None = None
        self._listeners: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="agent-conversation")

    @property
    def closed(self) -> bool:
        return self._ws.closed

    def claim(self) -> None:
        """The call's Media Stream takes this conversation: its id now belongs to the attempt."""
        self._claimed = True
        if self.record is not None:
            self.record.claim()
        if self.conversation_id:
            self._announce(self.conversation_id)

    def _announce(self, conversation_id: str) -> None:
        if self._on_conversation_id is not None:
            self._spawn(self._on_conversation_id(conversation_id))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._listeners.add(task)
        task.add_done_callback(self._listeners.discard)

    def is_stale(self, audio: Audio) -> bool:
        return audio.event_id <= self.interrupted_upto

    async def attach(self, sink: AudioSink) -> None:
        """The call's Media Stream takes the agent's audio: what was held is handed to ``sink``
        first, then the reader hands it each event as it comes."""
        held = self._held
        while held:
            # The reader keeps adding to what is held while this awaits, so the order stays.
            event = held.popleft()
            if isinstance(event, Interruption):
                await sink.interruption(event)
            elif not self.is_stale(event):
                await sink.audio(event)
        self._sink = sink

    def detach(self) -> None:
        """The Media Stream has ended: nothing more goes to its sink. A reader waiting inside
        the sink (for Twilio's side to take more) is stopped: the call is over."""
        self._sink = None
        if self._delivering and self._reader is not None and not self._reader.done():
            self._reader.cancel()

    def audio_sender(self, *, encoded_here: bool = False) -> Callable[[str], Awaitable[None]]:
        """What sends the caller's audio to the agent, one `user_audio_chunk` per payload.
        ``encoded_here``: the payloads are base64 callbridge made (converted audio)."""
        ws = self._ws
        build = agent_wire.user_audio

        async def send(payload: str) -> None:
            if not ws.closed:
                await ws.send_str(build(payload, encoded_here=encoded_here))

        return send

    async def close(self) -> None:
        if not self._ws.closed:
            await self._ws.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._listeners:
            await asyncio.gather(*self._listeners, return_exceptions=True)
        if self.record is not None:
            await self.record.close()

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    event = agent_wire.parse(message.data)
                except ValueError:
                    log.warning("agent sent a message that is not JSON; ignored")
                    continue
                if type(event) is not Audio:
                    await self._handle(event)
                elif event.event_id > self.interrupted_upto:
                    # 50 a second: handed on here, with no call between the reader and the sink.
                    sink = self._sink
                    if sink is None:
                        self._held.append(event)
                        continue
                    self._delivering = True
                    try:
                        await sink.audio(event)
                    finally:
                        self._delivering = False
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.info("agent connection lost: %r", exc)
        except Exception:
            # What the sink could not take (audio that does not decode, say) ends the call, as
            # an error in the relay's own task did: the conversation is over, not left half-read.
            log.exception("agent conversation ended on an error in its reader")
        finally:
            self.ready.set()
            self.ended.set()

    async def _interrupted(self, event: Interruption) -> None:
        self.interrupted_upto = max(self.interrupted_upto, event.event_id)
        sink = self._sink
        if sink is None:
            self._held.append(event)
            return
        self._delivering = True
        try:
            await sink.interruption(event)
        finally:
            self._delivering = False

    async def _handle(self, event: agent_wire.AgentEvent) -> None:
        match event:
            case Ping():
                await self._ws.send_str(agent_wire.pong(event.event_id))
                self.pings_answered += 1
            case Interruption():
                await self._interrupted(event)
            case Metadata():
                self.conversation_id = event.conversation_id
                self.audio_formats = (
                    event.agent_output_audio_format,
                    event.user_input_audio_format,
                )
                self.ready.set()
                if self._claimed and event.conversation_id:
                    self._announce(event.conversation_id)
            case ClientToolCall():
                # Its own task: a registered tool may take a moment, the audio may not wait.
                self._spawn(self._answer_tool(event))
            case UserTranscript() | AgentResponse() | AgentResponseCorrection() | AgentError():
                await self._note(event)

    async def _answer_tool(self, call: ClientToolCall) -> None:
        context = ToolContext(self.record.attempt_id if self.record else None, self.conversation_id)
        outcome = await self._tools.run(call.tool_name, call.parameters, context)
        if not self._ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.send_str(
                    agent_wire.client_tool_result(
                        call.tool_call_id, outcome.result, is_error=outcome.is_error
                    )
                )
        if self.record is not None:
            self.record.tool_called(call.tool_name, call.tool_call_id, is_error=outcome.is_error)

    async def _note(
        self, event: UserTranscript | AgentResponse | AgentResponseCorrection | AgentError
    ) -> None:
        record = self.record
        match event:
            case UserTranscript() if record is not None:
                record.said("user", event.text, event.event_id)
            case AgentResponse() if record is not None:
                record.said("agent", event.text, event.event_id)
            case AgentResponseCorrection() if record is not None:
                record.corrected(event.original, event.corrected, event.event_id)
            case AgentError():
                self.error = event.describe()
                attempt_id = record.attempt_id if record is not None else None
                log.warning("attempt %s: the agent ended on an error: %s", attempt_id, self.error)
                if record is not None:
                    record.failed(self.error)
                # The agent closes after an error; not waiting for it ends the call at once.
                await self._ws.close()


async def open_conversation(
    client: ElevenLabsClient,
    session: aiohttp.ClientSession,
    *,
    agent_id: str,
    client_data: dict[str, Any],
    timeout_seconds: float,
    on_conversation_id: ConversationIdListener | None = None,
    record: LiveRecord | None = None,
    tools: ClientToolRegistry | None = None,
) -> AgentConversation:
    """Connect to the agent, send the contact's initiation data and wait for the agent's
    metadata (ElevenLabs sends it first). Raises on failure."""

    async def connect() -> AgentConversation:
        url = await client.conversation_url(agent_id)
        ws = await session.ws_connect(url, autoping=True)
        try:
            await ws.send_str(agent_wire.initiation(client_data))
        except BaseException:
            await ws.close()
            raise
        conversation = AgentConversation(ws, on_conversation_id, record=record, tools=tools)
        conversation.start()
        try:
            await conversation.ready.wait()
        except BaseException:
            await conversation.close()
            raise
        return conversation

    return await asyncio.wait_for(connect(), timeout_seconds)
