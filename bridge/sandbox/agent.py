"""A local ElevenLabs agents API: the sandbox counterpart of the carrier, for demo and tests.

It speaks the parts of ElevenLabs that callbridge uses: the conversation WebSocket (initiation
data, metadata, audio, ping/pong), signed URLs, register-call (TwiML for a Twilio call we
placed), outbound-call over Twilio and over a SIP trunk (it places the call itself on the sandbox
carrier, as ElevenLabs does through an imported Twilio number, or through the user's trunk), GET
Conversation, and it sends signed post-call webhooks. It records what it
received in each conversation, the dynamic variables above all (`GET /conversations`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from bridge.api.bodies import JSON_LIMIT_BYTES, BadJson, loads, read_body
from bridge.fault_plan import Faults
from bridge.sandbox import agent_audio, agent_brain
from bridge.sandbox.agent_brain import ConversationRecord
from bridge.sandbox.agent_events import Narrator, behaviour_for
from bridge.sandbox.agent_profiles import AgentProfile, exists, profile_for
from bridge.sandbox.delivery import JOURNAL_LIMIT, Journal
from bridge.sandbox.faults import FaultInjector
from bridge.sandbox.inspection import InspectionGuard, guarded, journal_reply
from bridge.sandbox.recent import DEFAULT_RECORDS, Recent
from campaigns.tasks import TaskSet

log = logging.getLogger(__name__)

API_PREFIX = "/v1/convai"
# The number an imported agent phone number dials from, in the sandbox.
AGENT_NUMBER = "+15005550006"
FIRST_MESSAGE_TIMEOUT_SECONDS = 10.0
WEBHOOK_TIMEOUT_SECONDS = 15.0
# telephony_call_config.twilio_machine_detection.mode -> Twilio's MachineDetection.
MACHINE_DETECTION = {"enable": "Enable", "detect_message_end": "DetectMessageEnd"}
# Journals kept for inspection, sized from the carrier's journal
# (CALLBRIDGE_SANDBOX_JOURNAL_ENTRIES, 5,000 by default): webhooks sent (audio webhooks carry a
# recording each, so a fifth as many: 1,000) and conversation WebSocket messages, both ways (ten
# times as many: 50,000, some 50 calls of a few seconds each).
WEBHOOKS_PER_JOURNAL_ENTRY = 0.2
MESSAGES_PER_JOURNAL_ENTRY = 10


def _ws_base(http_base: str) -> str:
    return http_base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


# Sees every conversation message both ways: ("server" | "client", message).
WireTap = Callable[[str, dict[str, Any]], None]


class OverrideRefused(Exception):
    """A conversation overrides settings its agent does not allow to be overridden."""


def _placed(
    record: ConversationRecord, answer: str | None, call_key: str, call_id: str | None
) -> web.Response:
    """The answer to an outbound-call request: the conversation and the call (its id under
    ``call_key``) if placed, else why the carrier refused it (``answer``)."""
    placed = answer is None
    return web.json_response(
        {
            "success": placed,
            "message": answer or "Success",
            "conversation_id": record.conversation_id if placed else None,
            call_key: call_id if placed else None,
        }
    )


def _refused(exc: OverrideRefused) -> web.HTTPException:
    return web.HTTPForbidden(
        text=json.dumps({"detail": {"status": "override_not_allowed", "message": str(exc)}}),
        content_type="application/json",
    )


def _check_exists(agent_id: str) -> None:
    """404, as ElevenLabs answers for an agent that is not in the key's workspace."""
    if not exists(agent_id):
        raise web.HTTPNotFound(
            text='{"detail": {"status": "agent_not_found", "message": "Agent not found"}}',
            content_type="application/json",
        )


class _ConversationSocket:
    """The agent's side of the conversation WebSocket, as a brain channel: it speaks and hears
    in the agent's own formats."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: ConversationRecord,
        profile: AgentProfile,
        tap: WireTap | None = None,
        capture: list[bytes] | None = None,
        capture_bytes: int = 0,
    ) -> None:
        self._ws = ws
        self._record = record
        self._event_id = 0
        self._tap = tap
        self.narrator = Narrator(self._send, self._next_id, behaviour_for(record.agent_id))
        self._profile = profile
        self._voice = agent_audio.Voice(profile.output_format, profile.tone_hz)
        self._ear = agent_audio.Ear(profile.input_format)
        self._heard: list[bytes] = []
        self._capture = capture
        self._capture_bytes = capture_bytes
        self._captured = 0

    def _next_id(self) -> int:
        self._event_id += 1
        return self._event_id

    async def _send(self, message: dict[str, Any]) -> None:
        if self._tap is not None:
            self._tap("server", message)
        await self._ws.send_json(message)

    async def metadata(self) -> None:
        await self._send(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": self._record.conversation_id,
                    "agent_output_audio_format": self._profile.output_format,
                    "user_input_audio_format": self._profile.input_format,
                },
            }
        )
        await self._send(
            {"type": "ping", "ping_event": {"event_id": self._next_id(), "ping_ms": None}}
        )
        await self.narrator.opened()

    async def say(self, frame: bytes) -> None:
        await self._send(
            {
                "type": "audio",
                "audio_event": {
                    "audio_base_64": base64.b64encode(frame).decode(),
                    "event_id": self._next_id(),
                },
            }
        )

    async def speak(self) -> None:
        frame = self._voice.frame()
        if frame is not None:
            await self.say(frame)

    async def interrupt(self) -> None:
        await self._send(
            {"type": "interruption", "interruption_event": {"event_id": self._event_id}}
        )

    async def hear(self) -> bytes | None:
        while not self._heard:
            chunk = await self._next_chunk()
            if chunk is None:
                return None
            if self._capture is not None and self._captured < self._capture_bytes:
                self._capture.append(chunk)
                self._captured += len(chunk)
            self._heard.extend(self._ear.frames(chunk))
        return self._heard.pop(0)

    async def _next_chunk(self) -> bytes | None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if self._tap is not None:
                self._tap("client", data)
            if "user_audio_chunk" in data:
                return base64.b64decode(data["user_audio_chunk"])
            if data.get("type") == "pong":
                self._record.pongs += 1
            elif data.get("type") == "client_tool_result":
                self.narrator.tool_result(data)
        return None

    async def end(self, code: int = 1000) -> None:
        await self._ws.close(code=code)


class _TwilioStream:
    """The agent's side of a Twilio Media Stream (register-call and native calls)."""

    # ElevenLabs' conversation messages have no place on a Twilio stream.
    narrator: Narrator | None = None

    def __init__(
        self,
        ws: web.WebSocketResponse,
        record: ConversationRecord,
        stream_sid: str,
        tone_hz: float,
    ):
        self._ws = ws
        self._record = record
        self._stream_sid = stream_sid
        self._said = 0
        # A Media Stream carries μ-law 8000 whatever the agent's own formats are.
        self._voice = agent_audio.Voice("ulaw_8000", tone_hz)

    async def say(self, frame: bytes) -> None:
        payload = base64.b64encode(frame).decode()
        await self._ws.send_json(
            {"event": "media", "streamSid": self._stream_sid, "media": {"payload": payload}}
        )
        self._said += 1
        if self._said == 1:
            await self._ws.send_json(
                {"event": "mark", "streamSid": self._stream_sid, "mark": {"name": "first-audio"}}
            )

    async def speak(self) -> None:
        frame = self._voice.frame()
        if frame is not None:
            await self.say(frame)

    async def interrupt(self) -> None:
        await self._ws.send_json({"event": "clear", "streamSid": self._stream_sid})

    async def hear(self) -> bytes | None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            event = data.get("event")
            if event == "media":
                return base64.b64decode(data["media"]["payload"])
            if event == "mark":
                self._record.marks.append(str(data.get("mark", {}).get("name")))
            elif event == "stop":
                return None
        return None

    async def end(self, code: int = 1000) -> None:
        await self._ws.close()


class SandboxAgent:
    def __init__(
        self,
        *,
        api_key: str | None,
        webhook_secret: str | None,
        base_url: str,
        webhook_url: str,
        carrier_url: str,
        account_sid: str,
        auth_token: str,
        inspection_guard: InspectionGuard | None = None,
        records_limit: int = DEFAULT_RECORDS,
        journal_limit: int = JOURNAL_LIMIT,
        faults: Faults | None = None,
    ) -> None:
        self._api_key = api_key
        self._faults = FaultInjector(faults or Faults())
        self._inspection_guard = inspection_guard
        self._webhook_secret = webhook_secret
        self._base = base_url.rstrip("/")
        self._webhook_url = webhook_url
        self._carrier_url = carrier_url.rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._session: aiohttp.ClientSession | None = None
        # signature -> agent id, one use each; a URL never used is forgotten in time.
        self._signed: Recent[str, str] = Recent(records_limit)
        # Kept for inspection after the call ended: the newest ``records_limit`` only.
        self.conversations: Recent[str, ConversationRecord] = Recent(records_limit)
        self.journal = Journal(max(1, int(journal_limit * WEBHOOKS_PER_JOURNAL_ENTRY)))
        self._tasks = TaskSet()
        # Every conversation WebSocket message, both ways, as {direction, message}.
        self.messages = Journal(journal_limit * MESSAGES_PER_JOURNAL_ENTRY)
        # Tests set this to see every conversation WebSocket message, both ways, as it happens.
        self.wire_tap: WireTap | None = None
        # Agents whose settings were changed through the agent API; the others use their ids'.
        self._profiles: dict[str, AgentProfile] = {}
        self._created = int(time.time())
        # For tests that measure what an agent heard: the first capture_seconds of each
        # conversation's caller audio, raw, chunk by chunk as it came, in the agent's input
        # format (none by default).
        self.capture_seconds = 0.0
        self.heard: Recent[str, list[bytes]] = Recent(records_limit)

    def memory(self) -> dict[str, tuple[int, int | None]]:
        """What this agent holds in memory: structure -> (entries, limit or None)."""
        return {
            "sandbox_agent_conversations": (len(self.conversations), self.conversations.limit),
            "sandbox_agent_heard": (len(self.heard), self.heard.limit),
            "sandbox_agent_signed_urls": (len(self._signed), self._signed.limit),
            "sandbox_agent_webhook_journal": (len(self.journal), self.journal.limit),
            "sandbox_agent_message_journal": (len(self.messages), self.messages.limit),
            "sandbox_agent_tasks": (len(self._tasks), None),
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"{API_PREFIX}/conversation", self._conversation_socket)
        app.router.add_get(f"{API_PREFIX}/conversation/get-signed-url", self._signed_url)
        app.router.add_get(f"{API_PREFIX}/agents/{{agent_id}}", self._get_agent)
        app.router.add_patch(f"{API_PREFIX}/agents/{{agent_id}}", self._patch_agent)
        app.router.add_post(f"{API_PREFIX}/twilio/register-call", self._register_call)
        app.router.add_post(f"{API_PREFIX}/twilio/outbound-call", self._outbound_call)
        app.router.add_post(f"{API_PREFIX}/sip-trunk/outbound-call", self._sip_outbound_call)
        app.router.add_get(f"{API_PREFIX}/conversations/{{conversation_id}}", self._conversation)
        app.router.add_post("/twilio/inbound", self._inbound_twiml)
        app.router.add_post("/twilio/status", self._call_status)
        app.router.add_get("/twilio/media", self._twilio_media)
        app.router.add_get("/conversations", guarded(self._inspection_guard)(self._inspect))
        app.router.add_get("/sent", guarded(self._inspection_guard)(self._inspect_sent))
        app.router.add_get("/messages", guarded(self._inspection_guard)(self._inspect_messages))
        return app

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self._tasks.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    # ------------------------------------------------------------------ REST

    def _check_key(self, request: web.Request) -> None:
        presented = request.headers.get("xi-api-key", "")
        if not self._api_key or not hmac.compare_digest(presented.encode(), self._api_key.encode()):
            raise web.HTTPUnauthorized(
                text='{"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}',
                content_type="application/json",
            )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = loads(await read_body(request, JSON_LIMIT_BYTES))
        except BadJson as exc:
            raise web.HTTPUnprocessableEntity(text='{"detail": "invalid JSON"}') from exc
        if not isinstance(body, dict):
            raise web.HTTPUnprocessableEntity(text='{"detail": "expected an object"}')
        return body

    def profile(self, agent_id: str) -> AgentProfile:
        return self._profiles.get(agent_id) or profile_for(agent_id)

    def _agent_document(self, agent_id: str) -> dict[str, Any]:
        # The fields ElevenLabs' GetAgentResponseModel requires, and the formats.
        return {
            "agent_id": agent_id,
            "name": f"Sandbox agent {agent_id}",
            "conversation_config": self.profile(agent_id).conversation_config(),
            "platform_settings": self.profile(agent_id).platform_settings(),
            "metadata": {
                "created_at_unix_secs": self._created,
                "updated_at_unix_secs": self._created,
            },
            "tags": [],
        }

    async def _get_agent(self, request: web.Request) -> web.Response:
        self._check_key(request)
        _check_exists(request.match_info["agent_id"])
        return web.json_response(self._agent_document(request.match_info["agent_id"]))

    async def _patch_agent(self, request: web.Request) -> web.Response:
        self._check_key(request)
        agent_id = request.match_info["agent_id"]
        _check_exists(agent_id)
        body = await self._json(request)
        config = body.get("conversation_config") or {}
        try:
            if not isinstance(config, dict):
                raise ValueError("conversation_config is an object")
            self._profiles[agent_id] = self.profile(agent_id).patched(config)
        except ValueError as exc:
            raise web.HTTPUnprocessableEntity(
                text=json.dumps({"detail": str(exc)}), content_type="application/json"
            ) from exc
        return web.json_response(self._agent_document(agent_id))

    async def _signed_url(self, request: web.Request) -> web.Response:
        self._check_key(request)
        agent_id = request.query.get("agent_id", "")
        if not agent_id:
            raise web.HTTPUnprocessableEntity(text='{"detail": "agent_id is required"}')
        _check_exists(agent_id)
        signature = secrets.token_urlsafe(24)
        self._signed[signature] = agent_id
        query = urlencode({"agent_id": agent_id, "conversation_signature": signature})
        return web.json_response(
            {"signed_url": f"{_ws_base(self._base)}{API_PREFIX}/conversation?{query}"}
        )

    def _record(self, agent_id: str, mode: str, client_data: Any) -> ConversationRecord:
        """The conversation's record; OverrideRefused (recorded as failed) when it overrides
        settings its agent does not let it override."""
        data = client_data if isinstance(client_data, dict) else {}
        user_id = data.get("user_id")
        record = ConversationRecord(
            conversation_id=agent_brain.new_conversation_id(),
            agent_id=agent_id,
            mode=mode,
            dynamic_variables=dict(data.get("dynamic_variables") or {}),
            conversation_config_override=data.get("conversation_config_override"),
            user_id=str(user_id) if user_id is not None else None,
        )
        self.conversations[record.conversation_id] = record
        refusal = self.profile(agent_id).refused_override(record.conversation_config_override)
        if refusal is not None:
            record.status = "failed"
            record.failure_reason = refusal
            raise OverrideRefused(refusal)
        return record

    def _stream_twiml(self, record: ConversationRecord) -> web.Response:
        response = VoiceResponse()
        stream = response.connect().stream(url=f"{_ws_base(self._base)}/twilio/media")
        stream.parameter(name="conversation_id", value=record.conversation_id)
        return web.Response(text=str(response), content_type="text/xml")

    async def _register_call(self, request: web.Request) -> web.Response:
        self._check_key(request)
        body = await self._json(request)
        if not body.get("agent_id") or not body.get("to_number"):
            raise web.HTTPUnprocessableEntity(text='{"detail": "agent_id and to_number"}')
        try:
            record = self._record(
                str(body["agent_id"]), "register", body.get("conversation_initiation_client_data")
            )
        except OverrideRefused as exc:
            raise _refused(exc) from exc
        record.to_number = str(body["to_number"])
        record.from_number = str(body.get("from_number") or "")
        # A number on the caller's own Twilio account has no id here: a stable stand-in.
        digest = hashlib.sha256(record.from_number.encode()).hexdigest()[:20]
        record.phone_number_id = f"phnum_{digest}"
        return self._stream_twiml(record)

    async def _outbound_call(self, request: web.Request) -> web.Response:
        """Twilio outbound call: ElevenLabs dials from the Twilio number imported into it."""
        record, answer = await self._place(request, "native")
        return _placed(record, answer, "callSid", record.call_sid)

    async def _sip_outbound_call(self, request: web.Request) -> web.Response:
        """SIP-trunk outbound call: ElevenLabs sends the INVITE to the user's trunk. Here the
        trunk ends on the sandbox carrier, which plays the number's outcome as for any call."""
        record, answer = await self._place(request, "sip_trunk")
        return _placed(record, answer, "sip_call_id", record.sip_call_id)

    async def _place(
        self, request: web.Request, mode: str
    ) -> tuple[ConversationRecord, str | None]:
        """A call ElevenLabs places itself, on the sandbox carrier: its record, and the reason
        the carrier refused it (None: placed)."""
        self._check_key(request)
        body = await self._json(request)
        missing = [k for k in ("agent_id", "agent_phone_number_id", "to_number") if not body.get(k)]
        if missing:
            raise web.HTTPUnprocessableEntity(
                text=json.dumps({"detail": f"missing {', '.join(missing)}"})
            )
        try:
            record = self._record(
                str(body["agent_id"]), mode, body.get("conversation_initiation_client_data")
            )
        except OverrideRefused as exc:
            raise _refused(exc) from exc
        record.to_number = str(body["to_number"])
        record.from_number = AGENT_NUMBER
        record.phone_number_id = str(body["agent_phone_number_id"])
        telephony = body.get("telephony_call_config") or {}
        query = urlencode({"conversation_id": record.conversation_id})
        form = {
            "To": record.to_number,
            "From": AGENT_NUMBER,
            "Url": f"{self._base}/twilio/inbound?{query}",
            "StatusCallback": f"{self._base}/twilio/status?{query}",
            "StatusCallbackEvent": "completed",
            "Timeout": str(int(telephony.get("ringing_timeout_secs") or 60)),
        }
        detection = (telephony.get("twilio_machine_detection") or {}).get("mode")
        # Twilio's answering-machine detection: ignored for other providers, as ElevenLabs does.
        if mode == "native" and detection in MACHINE_DETECTION:
            # Synchronous: the verdict comes with the TwiML request, before the stream starts.
            form["MachineDetection"] = MACHINE_DETECTION[detection]
        assert self._session is not None
        url = f"{self._carrier_url}/2010-04-01/Accounts/{self._account_sid}/Calls.json"
        async with self._session.post(
            url, data=form, auth=aiohttp.BasicAuth(self._account_sid, self._auth_token)
        ) as response:
            answer = await response.json(content_type=None)
        if response.status >= 400:
            record.status = "failed"
            record.failure_reason = str(answer.get("message"))
            return record, record.failure_reason
        record.call_sid = str(answer["sid"])
        if mode == "sip_trunk":
            # A SIP Call-ID, as the INVITE to the trunk carried it.
            record.sip_call_id = f"{secrets.token_hex(16)}@sip.sandbox.elevenlabs.invalid"
        if self._faults.agent_create_timeout():
            log.info(
                "sandbox fault: holding the answer for conversation %s", record.conversation_id
            )
            # The call goes on; the client gives up first and never learns its conversation.
            await asyncio.sleep(self._faults.faults.hang_seconds)
        return record, None

    async def _conversation(self, request: web.Request) -> web.Response:
        """GET Conversation: what the transcription webhook carries, with the status so far."""
        self._check_key(request)
        record = self.conversations.get(request.match_info["conversation_id"])
        if record is None:
            raise web.HTTPNotFound(
                text='{"detail": "Conversation not found"}', content_type="application/json"
            )
        data = agent_brain.transcription_webhook(record)["data"]
        return web.json_response({**data, "status": record.status})

    async def _inspect(self, request: web.Request) -> web.Response:
        return web.json_response([r.to_json() for r in self.conversations.values()])

    async def _inspect_sent(self, request: web.Request) -> web.Response:
        """Every webhook sent, body and signature as sent (``?after=<seq>`` for the newer)."""
        return journal_reply(request, self.journal)

    async def _inspect_messages(self, request: web.Request) -> web.Response:
        """Every conversation WebSocket message, both ways (``?after=<seq>`` for the newer)."""
        return journal_reply(request, self.messages)

    def _tap(self, direction: str, message: dict[str, Any]) -> None:
        self.messages.record(direction=direction, message=message)
        if self.wire_tap is not None:
            self.wire_tap(direction, message)

    # ------------------------------------------------------------------ native calls' Twilio side

    async def _inbound_twiml(self, request: web.Request) -> web.Response:
        record = self.conversations.get(request.query.get("conversation_id", ""))
        if record is None:
            response = VoiceResponse()
            response.hangup()
            return web.Response(text=str(response), content_type="text/xml")
        form = await request.post()
        record.call_sid = str(form.get("CallSid") or record.call_sid or "")
        return self._stream_twiml(record)

    async def _call_status(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        record = self.conversations.get(request.query.get("conversation_id", ""))
        if record is not None and form.get("CallStatus") in ("busy", "no-answer", "failed"):
            record.status = "failed"
            record.failure_reason = form["CallStatus"]
            self._spawn(
                self._send_webhook(record, agent_brain.initiation_failure_webhook(record, form))
            )
        return web.Response(status=204)

    # ------------------------------------------------------------------ conversations

    async def _conversation_socket(self, request: web.Request) -> web.StreamResponse:
        agent_id = request.query.get("agent_id", "")
        _check_exists(agent_id)
        signature = request.query.get("conversation_signature")
        if signature is not None and self._signed.pop(signature, None) != agent_id:
            raise web.HTTPForbidden(text='{"detail": "invalid conversation signature"}')
        if not agent_id:
            raise web.HTTPBadRequest(text='{"detail": "agent_id is required"}')
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            first = await asyncio.wait_for(ws.receive(), FIRST_MESSAGE_TIMEOUT_SECONDS)
            data = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
        except (TimeoutError, ValueError):
            data = {}
        if data.get("type") != "conversation_initiation_client_data":
            await ws.close(code=1008, message=b"expected conversation_initiation_client_data")
            return ws
        self._tap("client", data)
        try:
            record = self._record(agent_id, "websocket", data)
        except OverrideRefused as exc:
            # ElevenLabs closes the conversation with a policy violation and the reason.
            await ws.close(code=1008, message=str(exc).encode()[:120])
            return ws
        profile = self.profile(agent_id)
        capture = None
        if self.capture_seconds > 0:
            capture = self.heard.setdefault(record.conversation_id, [])
        per_second = agent_audio.bytes_per_second(profile.input_format)
        capture_bytes = int(self.capture_seconds * per_second)
        channel = _ConversationSocket(ws, record, profile, self._tap, capture, capture_bytes)
        await channel.metadata()
        await agent_brain.converse(record, channel)
        self._spawn(self._report(record))
        return ws

    async def _twilio_media(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        record: ConversationRecord | None = None
        stream_sid = ""
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if data.get("event") == "start":
                start = data.get("start") or {}
                params = start.get("customParameters") or {}
                record = self.conversations.get(str(params.get("conversation_id", "")))
                stream_sid = str(data.get("streamSid") or start.get("streamSid") or "")
                if record is not None:
                    record.call_sid = record.call_sid or str(start.get("callSid") or "")
                    record.stream_sid = stream_sid
                break
        if record is None:
            await ws.close(code=1008, message=b"unknown conversation")
            return ws
        tone_hz = self.profile(record.agent_id).tone_hz
        await agent_brain.converse(record, _TwilioStream(ws, record, stream_sid, tone_hz))
        self._spawn(self._report(record))
        return ws

    # ------------------------------------------------------------------ webhooks

    async def _report(self, record: ConversationRecord) -> None:
        """After a conversation: its transcription, then its recording, as two webhooks."""
        await self._send_webhook(record, agent_brain.transcription_webhook(record))
        await self._send_webhook(record, agent_brain.audio_webhook(record))

    async def _send_webhook(self, record: ConversationRecord, envelope: dict[str, Any]) -> None:
        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json"}
        if self._webhook_secret:
            stamp = int(time.time())
            mac = hmac.new(
                self._webhook_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256
            ).hexdigest()
            headers["ElevenLabs-Signature"] = f"t={stamp},v0={mac}"
        status: int | None = None
        assert self._session is not None
        try:
            async with self._session.post(
                self._webhook_url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS),
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("sandbox agent webhook failed: %r", exc)
        self.journal.record(
            source="elevenlabs",
            kind=envelope["type"],
            method="POST",
            url=self._webhook_url,
            body=body.decode(),
            signature=headers.get("ElevenLabs-Signature"),
            response_status=status,
        )
        # Like ElevenLabs: one delivery, only a 200 counts.
        record.webhooks.append({"type": envelope["type"], "status": status})
