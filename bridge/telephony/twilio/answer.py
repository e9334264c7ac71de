"""POST /webhooks/twilio/twiml: an answered call is set up with our media relay's stream, or with
ElevenLabs' register-call, for the attempt's own call only."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from bridge.app_keys import (
    AGENT_CONNECTOR,
    ELEVENLABS,
    MEDIA_TOKEN_SECRET,
    SESSIONMAKER,
    SETTINGS,
)
from bridge.media import tokens
from bridge.media.calls import NotThisCall, answered_call
from bridge.media.connector import CallContext
from bridge.media.routes import record_agent_failure, stream_url
from bridge.telephony.elevenlabs.client import AgentApiError, initiation_data
from bridge.telephony.twilio import markup
from bridge.telephony.twilio.forms import required_call_sid, signed_form
from bridge.telephony.twilio.markup import twiml_response

routes = web.RouteTableDef()

REGISTER_TIMEOUT_SECONDS = 8.0
APOLOGY = "We are sorry, we cannot continue this call right now. Goodbye."


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
    token = tokens.issue(app[MEDIA_TOKEN_SECRET], context.attempt_id, call_sid)
    # The URL names the attempt, so the signature of its WebSocket upgrade is the call's own.
    response = markup.stream(
        stream_url(app[SETTINGS].base_url, context.attempt_id), context.attempt_id, token
    )
    # Open the agent conversation now, while Twilio sets up the stream: the first turn is then
    # ready when the callee starts listening.
    app[AGENT_CONNECTOR].prepare(context)
    return twiml_response(response)


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
    return twiml_response(markup.say_and_hang_up(APOLOGY))
