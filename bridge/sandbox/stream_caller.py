"""Twilio's side of a Media Stream for answered sandbox calls.

When the TwiML of an answered call says `<Connect><Stream>`, the carrier opens that WebSocket
(signed with X-Twilio-Signature over its URL, like Twilio), sends `connected` and `start` with
the `<Parameter>`s, then the callee's audio as 20 ms `media` frames (and a `dtmf` message when
the callee presses a key), and ends with `stop` when the callee hangs up. If the application
closes the stream first, the call ends, as with `<Connect>` on Twilio.

The audio the application sends plays in the callee's earpiece at real-time pace (20 ms per
160-byte frame), from a buffer: a `mark` is echoed once the audio sent before it has played,
and a `clear` drops the audio not played yet and echoes the marks still pending at once, as
Twilio documents.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import uuid
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from bridge.sandbox import agent_audio
from bridge.sandbox.recent import DEFAULT_RECORDS, Recent

logger = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 2.0
MULAW_BYTES_PER_SECOND = 8000
# The keys each kind of callee presses: {frame index: digit}. A person presses 1 once it has
# said hello, as if answering "press 1 to confirm".
CALLEE_KEYS: dict[str, dict[int, str]] = {"human": {agent_audio.HELLO_FRAMES + 5: "1"}}


@dataclass(frozen=True)
class StreamInstruction:
    url: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class TwimlPlan:
    stream: StreamInstruction | None = None
    hangup: bool = False
    # What <Say> verbs tell the caller, in order.
    said: tuple[str, ...] = ()


def read_twiml(text: str) -> TwimlPlan:
    """What the carrier acts on in a TwiML document: a `<Connect><Stream>`, or `<Hangup>`."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return TwimlPlan()
    stream = root.find("./Connect/Stream")
    if stream is not None and stream.get("url"):
        parameters = {
            str(p.get("name")): str(p.get("value", ""))
            for p in stream.findall("Parameter")
            if p.get("name")
        }
        return TwimlPlan(stream=StreamInstruction(str(stream.get("url")), parameters))
    said = tuple((say.text or "").strip() for say in root.findall("Say"))
    return TwimlPlan(hangup=root.find("Hangup") is not None, said=said)


@dataclass
class StreamStats:
    """What one Media Stream carried, for inspection (`GET /sandbox/calls/{sid}/media`)."""

    url: str
    stream_sid: str
    connected: bool = False
    frames_sent: int = 0
    frames_received: int = 0
    marks_echoed: list[str] = field(default_factory=list)
    # Of those, the marks echoed because a `clear` dropped the audio before them.
    marks_cleared: list[str] = field(default_factory=list)
    clears: int = 0
    audio_ms_received: int = 0
    audio_ms_cleared: int = 0  # dropped unplayed by a `clear`
    digits_sent: list[str] = field(default_factory=list)
    ended_by: str | None = None  # callee | application | error
    close_code: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StreamPlayer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        account_sid: str,
        auth_token: str,
        *,
        records_limit: int = DEFAULT_RECORDS,
    ) -> None:
        self._session = session
        self._account_sid = account_sid
        self._validator = RequestValidator(auth_token)
        self._hangups: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Per call, for inspection after it ended: the newest calls' only.
        self.stats: Recent[str, StreamStats] = Recent(records_limit)

    @property
    def playing(self) -> int:
        return len(self._tasks)

    def sign_with(self, auth_token: str) -> None:
        """Sign from now on with another auth token (the installation's, once it is known)."""
        self._validator = RequestValidator(auth_token)

    def start(
        self,
        call_sid: str,
        instruction: StreamInstruction,
        callee: str,
        on_application_close: Callable[[], object],
        words: str | None = None,
    ) -> None:
        """``words``: what the callee asks for when they speak (number_table.follow_up_words)."""
        if call_sid in self._tasks:
            return
        stats = StreamStats(url=instruction.url, stream_sid="MZ" + uuid.uuid4().hex)
        self.stats[call_sid] = stats
        hangup = asyncio.Event()
        self._hangups[call_sid] = hangup
        self._tasks[call_sid] = asyncio.create_task(
            self._play(call_sid, instruction, callee, stats, hangup, on_application_close, words),
            name=f"sandbox-stream-{call_sid}",
        )

    async def stop(self, call_sid: str) -> None:
        """The callee hangs up: send `stop`, close, and wait (briefly) for that to happen."""
        task = self._tasks.pop(call_sid, None)
        hangup = self._hangups.pop(call_sid, None)
        if task is None or hangup is None:
            return
        hangup.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_SECONDS)
        if not task.done():
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._hangups.clear()

    async def _play(
        self,
        call_sid: str,
        instruction: StreamInstruction,
        callee: str,
        stats: StreamStats,
        hangup: asyncio.Event,
        on_application_close: Callable[[], object],
        words: str | None = None,
    ) -> None:
        signature = self._validator.compute_signature(instruction.url, {})
        sequence = 0

        def message(event: str, **body: Any) -> str:
            nonlocal sequence
            sequence += 1
            return json.dumps(
                {"event": event, "sequenceNumber": str(sequence), "streamSid": stats.stream_sid}
                | body
            )

        try:
            async with self._session.ws_connect(
                instruction.url, headers={"X-Twilio-Signature": signature}
            ) as ws:
                stats.connected = True
                await ws.send_str(
                    json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                )
                start = {
                    "accountSid": self._account_sid,
                    "streamSid": stats.stream_sid,
                    "callSid": call_sid,
                    "tracks": ["inbound"],
                    "customParameters": instruction.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                }
                await ws.send_str(message("start", start=start))
                listener = asyncio.create_task(self._listen(ws, stats, message))
                index = 0
                while not hangup.is_set() and not listener.done():
                    frame = agent_audio.callee_frame(callee, index, words)
                    payload = base64.b64encode(frame).decode()
                    media = {
                        "track": "inbound",
                        "chunk": str(index + 1),
                        "timestamp": str(index * agent_audio.FRAME_MS),
                        "payload": payload,
                    }
                    await ws.send_str(message("media", media=media))
                    stats.frames_sent += 1
                    digit = CALLEE_KEYS.get(callee, {}).get(index)
                    if digit is not None:
                        dtmf = {"track": "inbound_track", "digit": digit}
                        await ws.send_str(message("dtmf", dtmf=dtmf))
                        stats.digits_sent.append(digit)
                    index += 1
                    # Real time: one 20 ms frame per 20 ms, until the callee hangs up.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(hangup.wait(), agent_audio.FRAME_MS / 1000)
                if hangup.is_set() and not ws.closed:
                    stop = {"accountSid": self._account_sid, "callSid": call_sid}
                    await ws.send_str(message("stop", stop=stop))
                    stats.ended_by = "callee"
                    await ws.close()
                else:
                    stats.ended_by = "application"
                await asyncio.gather(listener, return_exceptions=True)
                stats.close_code = ws.close_code
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            stats.error = repr(exc)
            # Once connected, a broken socket means the application went away.
            stats.ended_by = stats.ended_by or ("application" if stats.connected else "error")
            logger.info("sandbox call %s: media stream failed: %r", call_sid, exc)
        if stats.ended_by != "callee":
            # <Connect> is over: with no more TwiML, Twilio ends the call.
            on_application_close()

    @staticmethod
    async def _listen(
        ws: aiohttp.ClientWebSocketResponse, stats: StreamStats, message: Callable[..., str]
    ) -> None:
        async def echo(name: str) -> None:
            if not ws.closed:
                await ws.send_str(message("mark", mark={"name": name}))

        earpiece = Earpiece(echo, stats)
        player = asyncio.create_task(earpiece.play())
        try:
            async for received in ws:
                if received.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(received.data)
                event = data.get("event")
                if event == "media":
                    stats.frames_received += 1
                    payload = str((data.get("media") or {}).get("payload", ""))
                    # Its length in bytes, without decoding it.
                    earpiece.audio(len(payload) * 3 // 4 - payload[-2:].count("="))
                elif event == "clear":
                    stats.clears += 1
                    await earpiece.clear()
                elif event == "mark":
                    earpiece.mark(str((data.get("mark") or {}).get("name", "")))
        finally:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)


class Earpiece:
    """The callee's ear: the application's audio plays from a buffer at real-time pace, and a
    mark is echoed when the audio sent before it has played (or been cleared)."""

    def __init__(self, echo: Callable[[str], Awaitable[None]], stats: StreamStats) -> None:
        self._echo = echo
        self._stats = stats
        self._loop = asyncio.get_running_loop()
        self._ends_at = 0.0  # when the audio buffered so far will have played (loop time)
        self._marks: deque[tuple[float, str]] = deque()  # (due, name), in order
        self._woken = asyncio.Event()

    def audio(self, size: int) -> None:
        seconds = size / MULAW_BYTES_PER_SECOND
        self._ends_at = max(self._loop.time(), self._ends_at) + seconds
        self._stats.audio_ms_received += round(seconds * 1000)

    def mark(self, name: str) -> None:
        self._marks.append((max(self._loop.time(), self._ends_at), name))
        self._woken.set()

    async def clear(self) -> None:
        now = self._loop.time()
        self._stats.audio_ms_cleared += round(max(0.0, self._ends_at - now) * 1000)
        self._ends_at = now
        pending = [name for _, name in self._marks]
        self._marks.clear()
        for name in pending:
            self._stats.marks_echoed.append(name)
            self._stats.marks_cleared.append(name)
            await self._echo(name)

    async def play(self) -> None:
        """Echo each mark when its audio has played: one timer, not one sleep per frame."""
        while True:
            if not self._marks:
                self._woken.clear()
                await self._woken.wait()
                continue
            due, name = self._marks[0]
            delay = due - self._loop.time()
            if delay > 0:
                self._woken.clear()
                # Woken early by a clear (or a new mark): look again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), delay)
                continue
            self._marks.popleft()
            self._stats.marks_echoed.append(name)
            await self._echo(name)
