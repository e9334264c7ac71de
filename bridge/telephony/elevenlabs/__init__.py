"""ElevenLabs: the agents API client, the calls ElevenLabs places itself (native, over its Twilio
integration; sip_trunk, over the user's SIP trunk) and the post-call webhook that reports how
every call with an agent went."""

from __future__ import annotations

from aiohttp import web

from bridge.telephony.elevenlabs import native, post_call, sip_trunk

CONNECTIONS = native.CONNECTIONS + sip_trunk.CONNECTIONS


def setup(app: web.Application) -> None:
    """The route of the post-call webhook (its signature is checked with the configured secret)."""
    app.add_routes(post_call.routes)
