"""Twilio's requests to us: call status and AMD callbacks, and the TwiML for an answered call."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from bridge.app_keys import (
    AGENT_CONNECTOR,
    APPLIER,
    DIALER,
    ELEVENLABS,
    MEDIA_TOKEN_SECRET,
    SESSIONMAKER,
    SETTINGS,
    TWILIO_VALIDATOR,
)
from bridge.background import spawn
from bridge.media import tokens
from bridge.media.calls import NotThisCall, answered_call
from bridge.media.connector import CallContext
from bridge.media.routes import record_agent_failure, stream_url
from bridge.telephony.elevenlabs import AgentApiError, initiation_data
from bridge.telephony.twilio import answerer, attempt_status, error_class
from bridge.webhooks.signatures import verified_form
from bridge.wire_values import whole_number
from campaigns import voicemail
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

REGISTER_TIMEOUT_SECONDS = 8.0
APOLOGY = "We are sorry, we cannot continue this call right now. Goodbye."


async def signed_form(request: web.Request) -> dict[str, str]:
    app = request.app
    form = await verified_form(request, app[TWILIO_VALIDATOR], app[SETTINGS].base_url)
    return {key: str(form[key]) for key in form}


def required_call_sid(params: dict[str, str]) -> str:
    sid = params.get("CallSid", "")
    if not sid:
        raise web.HTTPBadRequest(
            text='{"error": {"code": "bad_request", "message": "CallSid is required"}}',
            content_type="application/json",
        )
    return sid


async def _apply(request: web.Request, update: CallUpdate) -> web.Response:
    await request.app[APPLIER].apply(update)
    # Twilio waits at most 15 s and only needs a 2xx: answer at once, with nothing to parse.
    return web.Response(status=204)


@routes.post("/webhooks/twilio/status")
async def status_callback(request: web.Request) -> web.Response:
    params = await signed_form(request)
    update = CallUpdate(
        provider="twilio",
        provider_call_id=required_call_sid(params),
        kind="status",
        received_at=utcnow(),
        raw=params,
        attempt_id=request.query.get("attempt_id"),
        status=attempt_status(params.get("CallStatus") or "") or None,
        # Twilio numbers a call's callbacks: the domain's ordinal of the update.
        sequence=whole_number(params.get("SequenceNumber")),
        answered_by=params.get("AnsweredBy") or None,
        answerer=answerer(params.get("AnsweredBy")),
        duration_seconds=whole_number(params.get("CallDuration")),
        sip_response_code=whole_number(params.get("SipResponseCode")),
        error_code=params.get("ErrorCode") or None,
        error_class=error_class(params.get("ErrorCode")),
        error_message=params.get("ErrorMessage") or None,
    )
    return await _apply(request, update)


@routes.post("/webhooks/twilio/amd")
async def amd_callback(request: web.Request) -> web.Response:
    params = await signed_form(request)
    update = CallUpdate(
        provider="twilio",
        provider_call_id=required_call_sid(params),
        kind="amd",
        received_at=utcnow(),
        raw=params,
        attempt_id=request.query.get("attempt_id"),
        answered_by=params.get("AnsweredBy") or None,
        answerer=answerer(params.get("AnsweredBy")),
    )
    response = await _apply(request, update)
    action = await voicemail.action_for(
        request.app[SESSIONMAKER], update.attempt_id, update.answerer
    )
    if action is not None:
        # Acted on after answering: the provider may be waiting for this response.
        spawn(request.app, _carry_out(request.app, action))
    return response


async def _carry_out(app: web.Application, action: voicemail.VoicemailAction) -> None:
    dialer = app[DIALER]
    try:
        if action.kind == "leave_message":
            await dialer.leave_message(action.call_id, action.message or "")
        else:
            await dialer.hang_up(action.call_id)
    except TwilioRestException as exc:
        # 21220: the call ended on its own first (the machine hung up); nothing to undo but
        # the record of an action that did not happen.
        level = logging.INFO if exc.code == 21220 else logging.WARNING
        log.log(level, "voicemail %s for %s not done: %s", action.kind, action.attempt_id, exc.msg)
        await voicemail.forget_action(app[SESSIONMAKER], action.attempt_id)
    except Exception:
        log.exception("voicemail %s failed for attempt %s", action.kind, action.attempt_id)
        await voicemail.forget_action(app[SESSIONMAKER], action.attempt_id)


@routes.post("/webhooks/twilio/twiml")
async def twiml(request: web.Request) -> web.Response:
    """An answered call asks what to do: connect it to the campaign's agent.

    Only the attempt's own call is connected (see `bridge.media.calls`); any other gets 403 and
    no media token, which Twilio answers by hanging up.
    """
    params = await signed_form(request)
    app = request.app
    try:
        context = await answered_call(
            app[SESSIONMAKER],
            request.query.get("attempt_id", ""),
            required_call_sid(params),
            params.get("To", ""),
        )
    except NotThisCall as refusal:
        raise web.HTTPForbidden(
            text=json.dumps(
                {"error": {"code": refusal.code, "message": str(refusal), "details": {}}}
            ),
            content_type="application/json",
        ) from None
    if context.agent_connection == "register":
        return await register_call(request, context, params)
    return connect_stream(app, context)


def connect_stream(app: web.Application, context: CallContext) -> web.Response:
    """The TwiML that connects the attempt's answered call to our media relay: a stream whose
    token is good for this attempt and call only, and for one stream (`bridge.media.routes`)."""
    call_sid = str(context.call_sid)
    response = VoiceResponse()
    connect = response.connect()
    # The URL names the attempt, so the signature of its WebSocket upgrade is the call's own.
    stream = connect.stream(url=stream_url(app[SETTINGS].base_url, context.attempt_id))
    stream.parameter(name="attempt_id", value=context.attempt_id)
    token = tokens.issue(app[MEDIA_TOKEN_SECRET], context.attempt_id, call_sid)
    stream.parameter(name="token", value=token)
    # Open the agent conversation now, while Twilio sets up the stream: the first turn is then
    # ready when the callee starts listening.
    app[AGENT_CONNECTOR].prepare(context)
    return twiml_response(response)


def twiml_response(response: VoiceResponse | str) -> web.Response:
    return web.Response(text=str(response), content_type="text/xml")


async def register_call(
    request: web.Request,
    context: CallContext,
    params: dict[str, str],
    *,
    direction: str = "outbound",
) -> web.Response:
    app = request.app
    reason = None
    if not context.agent_id:
        reason = "the campaign has no agent_id"
    else:
        try:
            # Twilio waits 15 s for TwiML; ElevenLabs must answer well within that.
            return twiml_response(
                await asyncio.wait_for(
                    app[ELEVENLABS].register_call(
                        agent_id=context.agent_id,
                        from_number=params.get("From") or context.from_number or "",
                        to_number=params.get("To") or context.to,
                        client_data=initiation_data(
                            context.dynamic_variables, context.agent_override, context.user_id
                        ),
                        direction=direction,
                    ),
                    REGISTER_TIMEOUT_SECONDS,
                )
            )
        except TimeoutError:
            reason = "register-call timed out"
        except AgentApiError as exc:
            reason = f"register-call failed: {exc}"
    await record_agent_failure(app, context.attempt_id, params.get("CallSid", ""), reason)
    response = VoiceResponse()
    response.say(APOLOGY)
    response.hangup()
    return twiml_response(response)
