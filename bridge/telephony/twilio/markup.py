"""The TwiML we send Twilio: a stream to our media relay, a message and a hang-up, and the HTTP
response that carries TwiML."""

from __future__ import annotations

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse


def stream(url: str, attempt_id: str, token: str) -> VoiceResponse:
    """Connect the call to the media relay at ``url``, naming the attempt and its stream token."""
    response = VoiceResponse()
    connected = response.connect().stream(url=url)
    connected.parameter(name="attempt_id", value=attempt_id)
    connected.parameter(name="token", value=token)
    return response


def say_and_hang_up(message: str) -> VoiceResponse:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return response


def twiml_response(response: VoiceResponse | str) -> web.Response:
    return web.Response(text=str(response), content_type="text/xml")
