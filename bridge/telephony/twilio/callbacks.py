"""Twilio's status and AMD callbacks: each parsed into the domain's CallUpdate and applied."""

from __future__ import annotations

import logging

from aiohttp import web
from twilio.base.exceptions import TwilioRestException

from bridge.app_keys import APPLIER, DIALER, SESSIONMAKER
from bridge.background import spawn
from bridge.telephony.twilio import PROVIDER
from bridge.telephony.twilio.forms import required_call_sid, signed_form
from bridge.telephony.twilio.statuses import answerer, attempt_status, error_class
from bridge.wire_values import whole_number
from campaigns import voicemail
from campaigns.call_updates import CallUpdate
from campaigns.clock import utcnow

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


async def _apply(request: web.Request, update: CallUpdate) -> web.Response:
    await request.app[APPLIER].apply(update)
    # Twilio waits at most 15 s and only needs a 2xx: answer at once, with nothing to parse.
    return web.Response(status=204)


@routes.post("/webhooks/twilio/status")
async def status_callback(request: web.Request) -> web.Response:
    params = await signed_form(request)
    update = CallUpdate(
        provider=PROVIDER,
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
        provider=PROVIDER,
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
