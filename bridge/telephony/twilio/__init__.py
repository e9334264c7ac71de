"""Twilio: the carrier our own dialer places calls on, with its agent connections and the routes
Twilio's requests come in on (status and AMD callbacks, the answered call's TwiML, calls back),
each signed with the account's auth token."""

from __future__ import annotations

from aiohttp import web
from twilio.request_validator import RequestValidator

from bridge.app_keys import SETTINGS, TWILIO_VALIDATOR
from bridge.telephony.port import Connection

# How attempts, call events and calls back name this provider.
PROVIDER = "twilio"
# Calls placed by the Twilio dialer; the TwiML handler joins the agent to the answered call over
# our own media relay (stream) or with ElevenLabs' register-call TwiML (register).
CONNECTIONS = (
    Connection("stream", provider=PROVIDER),
    Connection("register", provider=PROVIDER),
)


def setup(app: web.Application) -> None:
    """The validator of Twilio's signatures (the media relay's WebSocket upgrade checks them
    too) and the routes of Twilio's requests."""
    # Imported here: the route modules import the media relay, which imports this package's
    # wire format (media_wire).
    from bridge.telephony.twilio import answer, callbacks, inbound

    app[TWILIO_VALIDATOR] = RequestValidator(app[SETTINGS].twilio_auth_token)
    app.add_routes(callbacks.routes)
    app.add_routes(answer.routes)
    app.add_routes(inbound.routes)
