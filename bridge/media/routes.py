"""GET /media/twilio/{attempt_id}: the WebSocket Twilio opens for `<Connect><Stream>`, relayed
to the agent.

Three checks guard it, all before any agent connection is made: X-Twilio-Signature over the wss
URL (its own for each attempt) before the upgrade; the token from the `start` message's
parameters, good for this attempt and the call the `start` names; and that call's first stream
(a token opens one, on any node).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp
from aiohttp import web

from bridge.app_keys import (
    AGENT_CONNECTOR,
    MEDIA_TOKEN_SECRET,
    SESSIONMAKER,
    SETTINGS,
    TWILIO_VALIDATOR,
)
from bridge.media import audio_formats, tokens
from bridge.media.calls import bind_registered, start_stream
from bridge.media.connector import AgentUnavailable, CallContext, load_context
from bridge.media.relay import relay
from bridge.telephony.elevenlabs.client import websocket_url
from bridge.telephony.elevenlabs.outcomes import agent_failure
from bridge.telephony.twilio import media_wire
from bridge.telephony.twilio.media_wire import Start
from campaigns.attention import pause_for
from campaigns.call_events import record_event
from campaigns.clock import utcnow

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

STREAM_PATH = "/media/twilio"
# Twilio sends `connected` and `start` at once; a socket that says nothing is dropped.
START_TIMEOUT_SECONDS = 10.0
POLICY_VIOLATION = 1008


def stream_url(base_url: str, attempt_id: str) -> str:
    # A path, not a query: Twilio's Stream URL may not carry a query string.
    return f"{websocket_url(base_url)}{STREAM_PATH}/{quote(attempt_id, safe='')}"


async def _start_message(ws: web.WebSocketResponse) -> Start | None:
    async def first_start() -> Start | None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = media_wire.parse(message.data)
            except ValueError:
                return None
            if isinstance(event, Start):
                return event
        return None

    try:
        return await asyncio.wait_for(first_start(), START_TIMEOUT_SECONDS)
    except TimeoutError:
        return None


async def record_agent_failure(
    app: web.Application, attempt_id: str | None, call_sid: str, reason: str
) -> None:
    log.warning("attempt %s: agent unavailable: %s", attempt_id, reason)
    update = agent_failure(
        call_sid=call_sid, attempt_id=attempt_id, reason=reason, received_at=utcnow()
    )
    await record_event(app[SESSIONMAKER], update)


async def refuse_audio_format(
    app: web.Application,
    context: CallContext,
    call_sid: str,
    problem: audio_formats.UnsupportedAudioFormat,
) -> None:
    """The call was ended because its agent's audio cannot be converted: the attempt fails,
    and the campaign is paused with an attention item naming the agent setting to change."""
    agent_id = context.agent_id or "(none)"
    message, remedy = audio_formats.attention_text(agent_id, problem)
    await record_agent_failure(app, context.attempt_id, call_sid, message)
    if context.campaign_id is not None:
        await pause_for(
            app[SESSIONMAKER],
            context.campaign_id,
            kind=audio_formats.ATTENTION_KIND,
            code=None,
            message=message,
            remedy=remedy,
            details={"agent_id": agent_id, "setting": problem.setting, "value": problem.value},
        )


@routes.get(STREAM_PATH + "/{attempt_id}")
async def twilio_stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    signed_url = f"{websocket_url(app[SETTINGS].base_url)}{request.raw_path}"
    signature = request.headers.get("X-Twilio-Signature", "")
    # validate() compares in constant time; a stream carries no form parameters.
    if not signature or not app[TWILIO_VALIDATOR].validate(signed_url, {}, signature):
        log.warning("rejected media stream: bad or missing X-Twilio-Signature")
        raise web.HTTPForbidden(
            text='{"error": {"code": "bad_signature", "message": "invalid X-Twilio-Signature"}}',
            content_type="application/json",
        )
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    start = await _start_message(ws)
    if start is None:
        await ws.close(code=POLICY_VIOLATION, message=b"expected a start message")
        return ws
    attempt_id = request.match_info["attempt_id"]
    token = start.custom_parameters.get("token", "")
    named = start.custom_parameters.get("attempt_id", attempt_id)
    secret = app[MEDIA_TOKEN_SECRET]
    own_call = tokens.verify(secret, attempt_id, start.call_sid, token)
    # A registered call's token names no call (its sid was not known yet): the stream's call
    # becomes the attempt's, if the attempt has none.
    registered = not own_call and tokens.verify(secret, attempt_id, tokens.REGISTERED_CALL, token)
    if named != attempt_id or not (own_call or registered):
        log.warning("rejected media stream for attempt %s: bad token for its call", attempt_id)
        await ws.close(code=POLICY_VIOLATION, message=b"bad token")
        return ws
    if registered and not await bind_registered(app[SESSIONMAKER], attempt_id, start.call_sid):
        log.warning("rejected media stream for attempt %s: it has a call already", attempt_id)
        await ws.close(code=POLICY_VIOLATION, message=b"token already used")
        return ws
    if not await start_stream(app[SESSIONMAKER], attempt_id, start.call_sid, start.stream_sid):
        log.warning("rejected media stream for attempt %s: its call has one already", attempt_id)
        await ws.close(code=POLICY_VIOLATION, message=b"token already used")
        return ws
    context = await load_context(app[SESSIONMAKER], attempt_id)
    if context is None:
        await ws.close(code=POLICY_VIOLATION, message=b"unknown attempt")
        return ws
    try:
        conversation = await app[AGENT_CONNECTOR].take(context)
    except AgentUnavailable as exc:
        await ws.close()
        await record_agent_failure(app, attempt_id, start.call_sid, str(exc))
        return ws
    try:
        audio = audio_formats.audio_path(*conversation.audio_formats)
    except audio_formats.UnsupportedAudioFormat as problem:
        await conversation.close()
        # Recorded before Twilio's side is closed: once Twilio hangs up, aiohttp cancels this
        # handler, and whatever it had left to do with it.
        await refuse_audio_format(app, context, start.call_sid, problem)
        await ws.close()
        return ws
    ended_by = await relay(ws, start.stream_sid, conversation, audio)
    log.info("media stream of attempt %s ended by the %s", attempt_id, ended_by)
    return ws
