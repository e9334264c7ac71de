"""A scripted ElevenLabs conversation endpoint for tests of the media relay.

It answers the signed-URL request and the conversation WebSocket, records the initiation
data, then runs the test's script; `listen` collects what the relay sends (user audio, pongs,
client tool results), and every message both ways is kept for validation against the AsyncAPI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from tests.service import free_port

Script = Callable[[web.WebSocketResponse, "ScriptedAgent"], Awaitable[None]]


def frame(speaker: str, index: int) -> str:
    """A distinct 160-byte μ-law frame, base64 as both protocols carry it."""
    raw = f"{speaker}:{index:06d}:".encode().ljust(160, b"\xff")
    return base64.b64encode(raw).decode()


def audio(event_id: int, payload: str) -> dict[str, Any]:
    return {"type": "audio", "audio_event": {"audio_base_64": payload, "event_id": event_id}}


async def greet_once(ws: web.WebSocketResponse, me: ScriptedAgent) -> None:
    """One short audio chunk, then listen until the relay closes the conversation."""
    await me.send(ws, audio(1, "//////////8="))
    await me.listen(ws, lambda: False)


class ScriptedAgent:
    def __init__(
        self,
        script: Script | None = None,
        *,
        conversation_id: Callable[[], str] = lambda: f"conv_{uuid.uuid4().hex[:8]}",
        output_format: str = "ulaw_8000",
        input_format: str = "ulaw_8000",
    ) -> None:
        self.script = script
        self.output_format = output_format
        self.input_format = input_format
        self._conversation_id = conversation_id
        self.port = free_port()
        self.connections = 0
        self.initiations: list[dict[str, Any]] = []
        self.user_audio: list[str] = []
        self.pongs: list[int] = []
        self.tool_results: list[tuple[float, dict[str, Any]]] = []  # (arrived, message)
        self.sent: list[dict[str, Any]] = []  # every message this agent sent
        self.received: list[dict[str, Any]] = []  # every message the relay sent
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.closed_at: float | None = None
        self.finished = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/convai/conversation/get-signed-url", self._signed_url)
        app.router.add_get("/v1/convai/conversation", self._conversation)
        return app

    async def _signed_url(self, request: web.Request) -> web.Response:
        agent_id = request.query["agent_id"]
        url = f"ws://127.0.0.1:{self.port}/v1/convai/conversation?agent_id={agent_id}&sig=x"
        return web.json_response({"signed_url": url})

    async def send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        self.sent.append(message)
        await ws.send_json(message)

    async def _conversation(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        self.connected.set()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive_json()
        self.initiations.append(first)
        self.received.append(first)
        await self.send(
            ws,
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": self._conversation_id(),
                    "agent_output_audio_format": self.output_format,
                    "user_input_audio_format": self.input_format,
                },
            },
        )
        assert self.script is not None
        await self.script(ws, self)
        self.finished.set()
        return ws

    async def listen(self, ws: web.WebSocketResponse, until: Callable[[], bool]) -> None:
        """Collect what the relay sends until ``until()`` or the relay closes the socket."""
        while not until():
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                self.closed_at = time.monotonic()
                self.closed.set()
                return
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            self.received.append(data)
            if "user_audio_chunk" in data:
                self.user_audio.append(data["user_audio_chunk"])
            elif data.get("type") == "pong":
                self.pongs.append(int(data["event_id"]))
            elif data.get("type") == "client_tool_result":
                self.tool_results.append((time.monotonic(), data))
