"""POST /webhooks/twilio/inbound: the voice URL of the numbers campaigns dial from.

A person calling back is matched to their most recent contact (`campaigns.inbound`) and
connected to that campaign's agent, in its agent mode, with the contact's variables and the
context of the call before: the stream mode through our relay exactly as an outbound call
(`answer.connect_stream`), the register and native modes through ElevenLabs' register-call (a
native campaign's agent takes calls on our Twilio number the way register-call connects them).
A caller who matches no contact reaches the default inbound agent, if one is configured, or
hears a short message; nothing but the call event is stored about them.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bridge.app_keys import ELEVENLABS, SESSIONMAKER, SETTINGS
from bridge.media.connector import load_context
from bridge.settings import INBOUND_PATH
from bridge.telephony.elevenlabs.client import AgentApiError, initiation_data
from bridge.telephony.twilio import PROVIDER
from bridge.telephony.twilio.answer import (
    REGISTER_TIMEOUT_SECONDS,
    connect_stream,
    register_call,
)
from bridge.telephony.twilio.forms import required_call_sid, signed_form
from bridge.telephony.twilio.markup import say_and_hang_up, twiml_response
from campaigns import inbound
from campaigns.clock import utcnow

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post(INBOUND_PATH)
async def inbound_call(request: web.Request) -> web.Response:
    # The signature is checked before anything is read or stored (403 otherwise).
    params = await signed_form(request)
    app = request.app
    call_sid = required_call_sid(params)
    call = await inbound.answer(
        app[SESSIONMAKER],
        provider=PROVIDER,
        call_id=call_sid,
        caller=params.get("From", ""),
        raw=params,
        now=utcnow(),
    )
    if call is None:
        return await _unknown_caller(app, params)
    context = await load_context(app[SESSIONMAKER], call.attempt_id)
    if context is None:
        # The contact was deleted between the two reads: the caller is unknown now.
        return await _unknown_caller(app, params)
    if context.agent_connection == "stream":
        return connect_stream(app, context)
    return await register_call(request, context, params, direction="inbound")


async def _unknown_caller(app: web.Application, params: dict[str, str]) -> web.Response:
    settings = app[SETTINGS]
    if settings.inbound_agent_id:
        try:
            return twiml_response(
                await asyncio.wait_for(
                    app[ELEVENLABS].register_call(
                        agent_id=settings.inbound_agent_id,
                        from_number=params.get("From", ""),
                        to_number=params.get("To", ""),
                        client_data=initiation_data({inbound.CALL_TYPE: inbound.INBOUND_UNKNOWN}),
                        direction="inbound",
                    ),
                    REGISTER_TIMEOUT_SECONDS,
                )
            )
        except (TimeoutError, AgentApiError) as exc:
            log.warning("default inbound agent unavailable: %s", exc)
    return twiml_response(say_and_hang_up(settings.inbound_message))
