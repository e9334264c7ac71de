"""The sandbox carrier's side of a Media Stream plays what Twilio plays: marks echoed only once
the audio before them has played at real-time pace, a `clear` that drops the unplayed audio and
echoes its marks at once, and `dtmf` messages when the callee presses a key.

The application is a WebSocket server in the test, so that every message and its arrival time
can be checked; the carrier's StreamPlayer is the real one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.sandbox import agent_audio
from bridge.sandbox.stream_caller import StreamInstruction, StreamPlayer
from bridge.settings import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN

FRAME = base64.b64encode(bytes([0xFF]) * 160).decode()  # 20 ms of μ-law silence
FRAME_SECONDS = 0.02


class Application:
    """The application's end of the stream: it receives every message with its arrival time."""

    def __init__(self) -> None:
        self.ws: web.WebSocketResponse | None = None
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.started = asyncio.Event()
        self.arrived = asyncio.Event()
        self.stream_sid = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        async for message in ws:
            data = json.loads(message.data)
            self.received.append((time.monotonic(), data))
            if data["event"] == "start":
                self.stream_sid = data["streamSid"]
                self.started.set()
            self.arrived.set()
        return ws

    async def send(self, event: str, **body: Any) -> float:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"event": event, "streamSid": self.stream_sid, **body}))
        return time.monotonic()

    async def audio(self, frames: int) -> None:
        for _ in range(frames):
            await self.send("media", media={"payload": FRAME})

    def events(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in self.received if m["event"] == kind]

    async def until(self, predicate: Any, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "condition not met in time"
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                continue

    def echo_of(self, name: str) -> float | None:
        return next((at for at, m in self.events("mark") if m["mark"]["name"] == name), None)


@pytest.fixture
async def stream(aiohttp_server: Any) -> AsyncIterator[tuple[Application, StreamPlayer]]:
    application = Application()
    app = web.Application()
    app.router.add_get("/stream", application.handle)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        player = StreamPlayer(session, SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN)
        instruction = StreamInstruction(f"ws://127.0.0.1:{server.port}/stream", {"a": "b"})
        player.start("CA" + "1" * 32, instruction, "human", lambda: None)
        await asyncio.wait_for(application.started.wait(), 10)
        yield application, player
        await player.stop("CA" + "1" * 32)
        await player.close()


async def test_a_mark_is_echoed_only_once_the_audio_before_it_has_played(
    stream: tuple[Application, StreamPlayer],
) -> None:
    application, player = stream
    began = time.monotonic()  # the audio cannot start playing before it is sent
    for name, frames in (("after-10", 10), ("after-35", 25)):
        await application.audio(frames)
        await application.send("mark", mark={"name": name})
    await application.until(lambda: application.echo_of("after-35") is not None)
    ten, thirty_five = application.echo_of("after-10"), application.echo_of("after-35")
    assert ten is not None and thirty_five is not None
    # Playing takes 20 ms a frame: each echo waits for its audio (sending it took a moment).
    assert ten - began >= 10 * FRAME_SECONDS - 0.005
    assert thirty_five - began >= 35 * FRAME_SECONDS - 0.005
    stats = player.stats["CA" + "1" * 32]
    assert stats.marks_echoed == ["after-10", "after-35"] and stats.marks_cleared == []
    assert stats.audio_ms_received == 700 and stats.audio_ms_cleared == 0


async def test_a_clear_drops_the_unplayed_audio_and_echoes_its_marks_at_once(
    stream: tuple[Application, StreamPlayer],
) -> None:
    application, player = stream
    names = [f"m{i}" for i in range(1, 6)]
    for name in names:  # 5 x 10 frames: one second of audio, a mark every 200 ms
        await application.audio(10)
        await application.send("mark", mark={"name": name})
    await application.until(lambda: application.echo_of("m1") is not None)
    cleared_at = await application.send("clear")
    await application.until(lambda: all(application.echo_of(n) for n in names))
    stats = player.stats["CA" + "1" * 32]
    assert stats.clears == 1
    # m1 played; the rest were cleared, so they came back at once, well before their audio
    # could have played (800 ms more).
    assert (
        stats.marks_cleared
        and stats.marks_cleared == names[len(names) - len(stats.marks_cleared) :]
    )
    assert "m1" not in stats.marks_cleared
    last_echo = max(at for at in (application.echo_of(n) for n in names) if at is not None)
    assert last_echo - cleared_at < 0.3
    assert 0 < stats.audio_ms_cleared <= 800
    assert stats.marks_echoed == names  # every mark comes back, in order


async def test_a_person_pressing_a_key_sends_a_dtmf_message(
    stream: tuple[Application, StreamPlayer],
) -> None:
    application, _ = stream
    await application.until(lambda: bool(application.events("dtmf")))
    (_, dtmf), *_ = application.events("dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "1"}
    assert dtmf["streamSid"] == application.stream_sid and dtmf["sequenceNumber"].isdigit()
    media = [m for _, m in application.received if m["event"] == "media"]
    # Pressed after the callee said hello (its first HELLO_FRAMES frames).
    assert len(media) > agent_audio.HELLO_FRAMES
