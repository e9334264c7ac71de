"""Twilio's requests read: the form, once its signature is checked, and the CallSid it names."""

from __future__ import annotations

from aiohttp import web

from bridge.app_keys import SETTINGS, TWILIO_VALIDATOR
from bridge.telephony.twilio.signatures import verified_form


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
